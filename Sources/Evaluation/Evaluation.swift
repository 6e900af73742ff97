// Evaluation: the metrics of shared/docs/metrics.md and the data-set reader around them.
//
// - Image level (`imageAUROC`, `imageROCCurve`, `f1Max`): a handful of scores, sorted once.
// - Pixel level (`PixelMetricsAccumulator`, `pixelAUROC`, `aupro`): millions of pixels. Each
//   map value becomes an order-preserving 32-bit key; normal pixels keep only the key, defect
//   pixels the key and their connected region, so a category of 100 images at 256x256 costs
//   about 30 MB and two radix sorts. Both AUROC and the PRO curve are then exact walks over the
//   distinct map values (no threshold binning), ties counting half as in scikit-learn.
// - `MVTecCategory` lists the files of one category of the MVTec AD layout; decoding is the
//   Imaging module's job.
// - `ResultsTable` and the chart data turn the numbers into what reports print and plot.
//
// Degenerate inputs (a single class, no defect region, NaN scores) throw `MetricError`;
// inputs of mismatched shapes are programmer errors and stop on a precondition.
import Foundation

/// Why a metric has no value for the given data.
public enum MetricError: Error, CustomStringConvertible, Equatable {
    /// AUROC needs both classes; `positives`/`negatives` say what was there.
    case singleClass(metric: String, positives: Int, negatives: Int)
    /// AUPRO needs at least one ground-truth region and at least one normal pixel.
    case noDefectRegions(metric: String)
    case noNormalPixels(metric: String)
    /// A score or map value was NaN (`index` counts over all values passed so far).
    case notANumber(metric: String, index: Int)
    case empty(metric: String)

    public var description: String {
        switch self {
        case let .singleClass(metric, positives, negatives):
            return "\(metric) is undefined: \(positives) defective and \(negatives) good samples; it needs both (evaluate on a test set with good and defective images)"
        case let .noDefectRegions(metric):
            return "\(metric) is undefined: no ground-truth mask has a defect pixel (masks are binarised at > 127; check that the masks belong to these images)"
        case let .noNormalPixels(metric):
            return "\(metric) is undefined: every pixel is marked defective (check the masks: a white mask is all defect)"
        case let .notANumber(metric, index):
            return "\(metric): value \(index) is NaN (the model produced a non-finite score; check its inputs and weights)"
        case let .empty(metric):
            return "\(metric): no samples were given"
        }
    }
}
