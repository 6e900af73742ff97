// The evaluation report as one self-contained HTML page (charts and heatmaps embedded as
// data: URIs, no scripts, no external resources) next to report.json.
import Foundation
import Imaging
import OperatorErrors

/// A report file that could not be written.
public struct ReportError: OperatorError, Equatable {
    public let path: String
    public let problem: String
    public let hint: String

    public init(path: String, problem: String, hint: String) {
        self.path = path
        self.problem = problem
        self.hint = hint
    }
}

public enum HTMLReport {
    public static let pageFileName = "index.html"
    public static let jsonFileName = "report.json"

    /// Line colours of the maps, in the order S-T, D, full (and on if there are more).
    static let mapColors: [ChartColor] = [.blue, .orange, .purple, .green, .vermillion]

    /// Writes index.html and report.json into `directory` (created if needed); each file is
    /// written to a temporary name and renamed, so a reader never sees half a report.
    public static func write(_ report: EvaluationReport, to directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ReportError(path: directory.path, problem: "cannot create the report folder: \(error.localizedDescription)",
                              hint: "choose a --report folder this user can write to")
        }
        let page = Data(try html(for: report).utf8)
        let json = try report.jsonData()
        for (name, data) in [(pageFileName, page), (jsonFileName, json)] {
            let url = directory.appendingPathComponent(name)
            do {
                try data.write(to: url, options: .atomic)
            } catch {
                throw ReportError(path: url.path, problem: "cannot write the report: \(error.localizedDescription)",
                                  hint: "check the free space and permissions of \(directory.path)")
            }
        }
    }

    /// The page as a string.
    public static func html(for report: EvaluationReport) throws -> String {
        var body = "<h1>\(escape(report.title))</h1>\n"
        body += "<p class=\"meta\">Created \(escape(report.createdAt)) · \(report.categories.count) "
            + (report.categories.count == 1 ? "category" : "categories")
            + " · metrics as in docs/metrics.md (image AUROC, pixel AUROC, AUPRO up to FPR \(report.categories.first.map { format($0.fprLimit) } ?? "0.3"), F1-max), in percent</p>\n"
        if !report.summaries.isEmpty {
            body += "<h2>Mean over categories</h2>\n"
            for table in report.summaries { body += resultsTable(table, caption: table.title) }
        }
        for (index, category) in report.categories.enumerated() {
            body += try section(for: category, index: index)
        }
        return """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>\(escape(report.title))</title>
        <style>\(style)</style>
        </head>
        <body>
        \(body)</body>
        </html>

        """
    }

    static let style = """
    body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1300px; color: #222; padding: 0 16px; }
    h1 { font-size: 26px; margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 2px solid #ddd; padding-bottom: 4px; } h3 { margin-top: 24px; }
    .meta { color: #555; font-size: 14px; }
    table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
    caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
    th, td { padding: 4px 10px; border-bottom: 1px solid #e3e3e3; text-align: right; }
    th:first-child, td:first-child { text-align: left; }
    tr.summary td { font-weight: 600; border-top: 2px solid #999; }
    .charts { display: flex; flex-wrap: wrap; gap: 16px; }
    figure { margin: 0; } figcaption { font-size: 13px; color: #444; max-width: 560px; }
    .charts img { width: 560px; height: auto; border: 1px solid #eee; }
    .grid { display: flex; flex-wrap: wrap; gap: 12px; }
    .grid figure { width: 220px; } .grid img { width: 220px; height: auto; display: block; }
    .grid figcaption { font-size: 12px; overflow-wrap: anywhere; }
    .flag { color: #b00; font-weight: 600; } .ok { color: #070; font-weight: 600; }
    .swatch { display: inline-block; width: 18px; height: 4px; vertical-align: middle; margin: 0 4px 0 10px; }
    """

    static func section(for category: CategoryReport, index: Int) throws -> String {
        var html = "<section id=\"category-\(index)\">\n<h2>\(escape(category.category))</h2>\n"
        html += "<p class=\"meta\">Data: \(escape(category.dataPath))<br>Model: \(escape(category.modelPath))"
            + (category.modelID.map { " (id \(escape($0)))" } ?? "")
            + "<br>Evaluated at \(category.evaluationWidth)×\(category.evaluationHeight); "
            + "\(category.goodScores.counts.reduce(0, +)) good and \(category.defectiveScores.counts.reduce(0, +)) defective test images</p>\n"
        let timing = category.timing
        html += "<p>Inference time per image: mean <b>\(format(timing.meanMilliseconds, decimals: 1)) ms</b>, median "
            + "\(format(timing.medianMilliseconds, decimals: 1)) ms, 95th percentile \(format(timing.p95Milliseconds, decimals: 1)) ms "
            + "over \(timing.imageCount) images (\(escape(timing.note))).</p>\n"
        if let threshold = category.threshold {
            html += "<p>Production threshold: <b>\(format(threshold))</b>"
                + (category.thresholdStatement.map { " — \(escape($0))" } ?? "") + "</p>\n"
        }

        // Overall rows of every map side by side, then the per-defect-type tables.
        let overall = ResultsTable(title: "Overall", rows: category.maps.map { map in
            var row = map.table.summary
            row.name = map.name
            return row
        }, summary: ResultsRow(name: "", goodImages: 0, defectiveImages: 0, scores: MetricScores()))
        html += resultsTable(overall, caption: "Overall, per anomaly map", showSummary: false)
        html += "<h3>Per defect type</h3>\n"
        for map in category.maps { html += resultsTable(map.table, caption: "Map: \(map.name)") }

        html += "<h3>Curves</h3>\n<div class=\"charts\">\n"
        let colored = category.maps.enumerated().map { ($1, mapColors[$0 % mapColors.count]) }
        let legend = colored.map { "<span class=\"swatch\" style=\"background:\($1.hex)\"></span>\(escape($0.name))" }.joined()
        func series(_ curve: (MapEvaluation) -> [ChartPoint]) -> [ChartSeries] {
            colored.filter { !curve($0.0).isEmpty }.map { ChartSeries(label: $0.0.name, color: $0.1, points: curve($0.0)) }
        }
        let imageROC = series(\.imageROC), pixelROC = series(\.pixelROC), pro = series(\.pro)
        if !imageROC.isEmpty {
            html += try figure(ChartRenderer.rocChart(series: imageROC), alt: "image ROC",
                               caption: "Image-level ROC (one score per image).\(legend)")
        }
        if !pixelROC.isEmpty {
            html += try figure(ChartRenderer.rocChart(series: pixelROC), alt: "pixel ROC",
                               caption: "Pixel-level ROC, all test pixels pooled.\(legend)")
        }
        if !pro.isEmpty {
            html += try figure(ChartRenderer.proChart(series: pro, fprLimit: category.fprLimit), alt: "PRO curve",
                               caption: "Per-region overlap up to FPR \(format(category.fprLimit)); AUPRO is the area divided by \(format(category.fprLimit)).\(legend)")
        }
        let outputName = category.maps.last?.name ?? "model"
        html += try figure(ChartRenderer.histogramChart(good: category.goodScores, defective: category.defectiveScores, threshold: category.threshold),
                           alt: "score histogram",
                           caption: "Image scores of the \(escape(outputName)) map, good versus defective, with the production threshold (dashed).")
        html += "</div>\n"

        if !(category.worstGood.isEmpty && category.worstDefective.isEmpty) {
            html += "<h3>Worst cases</h3>\n<p class=\"meta\">Heatmaps of the \(escape(outputName)) map over the image (turbo colours, one scale for the category); "
                + "white outline: region above the production threshold; green outline: ground-truth defect.</p>\n"
            if !category.worstGood.isEmpty {
                html += "<h4>Highest-scored good images</h4>\n" + grid(category.worstGood, threshold: category.threshold)
            }
            if !category.worstDefective.isEmpty {
                html += "<h4>Lowest-scored defective images</h4>\n" + grid(category.worstDefective, threshold: category.threshold)
            }
        }
        return html + "</section>\n"
    }

    static func figure(_ chart: RGBImage, alt: String, caption: String) throws -> String {
        let uri = dataURI(try PNGEncoder.encode(chart), mimeType: "image/png")
        return "<figure><img src=\"\(uri)\" alt=\"\(escape(alt))\" width=\"\(chart.width)\" height=\"\(chart.height)\"><figcaption>\(caption)</figcaption></figure>\n"
    }

    static func grid(_ cases: [WorstCase], threshold: Double?) -> String {
        var html = "<div class=\"grid\">\n"
        for item in cases {
            let verdict: String
            if let threshold {
                let flagged = item.score > threshold
                let correct = flagged == (item.label != 0)
                verdict = " <span class=\"\(correct ? "ok" : "flag")\">\(flagged ? "flagged" : "passed")</span>"
            } else {
                verdict = ""
            }
            let name = URL(fileURLWithPath: item.image).lastPathComponent
            let picture = item.heatmap.map { "<img src=\"\(dataURI($0, mimeType: item.heatmapMimeType))\" alt=\"\(escape(name))\">" } ?? ""
            html += "<figure>\(picture)<figcaption>\(escape(item.defectType))/\(escape(name)) score \(format(item.score))\(verdict)</figcaption></figure>\n"
        }
        return html + "</div>\n"
    }

    static func resultsTable(_ table: ResultsTable, caption: String, showSummary: Bool = true) -> String {
        func cell(_ value: Double?) -> String { value.map { String(format: "%.1f", 100 * $0) } ?? "–" }
        func row(_ row: ResultsRow, summary: Bool) -> String {
            let values = [row.scores.imageAUROC, row.scores.pixelAUROC, row.scores.aupro, row.scores.f1Max].map(cell)
            return "<tr\(summary ? " class=\"summary\"" : "")><td>\(escape(row.name))</td><td>\(row.goodImages)</td><td>\(row.defectiveImages)</td>"
                + values.map { "<td>\($0)</td>" }.joined() + "</tr>\n"
        }
        var html = "<table>\n<caption>\(escape(caption))</caption>\n"
        html += "<tr><th></th><th>good</th><th>defective</th><th>image AUROC</th><th>pixel AUROC</th><th>AUPRO</th><th>F1-max</th></tr>\n"
        for r in table.rows { html += row(r, summary: false) }
        if showSummary { html += row(table.summary, summary: true) }
        return html + "</table>\n"
    }

    static func dataURI(_ data: Data, mimeType: String) -> String {
        "data:\(mimeType);base64,\(data.base64EncodedString())"
    }

    /// A number with `decimals` significant decimals, or scientific notation when tiny/huge.
    static func format(_ value: Double, decimals: Int = 4) -> String {
        guard value.isFinite else { return "\(value)" }
        let magnitude = abs(value)
        if magnitude != 0 && (magnitude < 1e-3 || magnitude >= 1e6) { return String(format: "%.3e", value) }
        var text = String(format: "%.\(decimals)f", value)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text
    }

    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
