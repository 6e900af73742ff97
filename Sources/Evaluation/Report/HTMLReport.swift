// The evaluation report as one self-contained HTML page (charts and images embedded as data:
// URIs, one inline script for the threshold tuner, the per-image colour scale and enlarging;
// no external resources) next to report.json and scores.csv.
import Foundation
import Imaging
import OperatorErrors

public enum HTMLReport {
    public static let pageFileName = "index.html"
    public static let jsonFileName = "report.json"
    public static let csvFileName = "scores.csv"

    /// Line colours of the maps, in the order S-T, D, full (and on if there are more).
    static let mapColors: [ChartColor] = [.blue, .orange, .purple, .green, .vermillion]

    /// Writes index.html, report.json and scores.csv into `directory` (created if needed); each file is
    /// written to a temporary name and renamed, so a reader never sees half a report.
    public static func write(_ report: EvaluationReport, to directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw OperatorError(.writeFailed, path: directory.path, problem: "cannot create the report folder: \(error.localizedDescription)",
                              hint: "choose a --report folder this user can write to")
        }
        let page = Data(try html(for: report).utf8)
        let json = try report.jsonData()
        let csv = Data(ScoresCSV.csv(for: report).utf8)
        for (name, data) in [(pageFileName, page), (jsonFileName, json), (csvFileName, csv)] {
            let url = directory.appendingPathComponent(name)
            do {
                try data.write(to: url, options: .atomic)
            } catch {
                throw OperatorError(.writeFailed, path: url.path, problem: "cannot write the report: \(error.localizedDescription)",
                                  hint: "check the free space and permissions of \(directory.path)")
            }
        }
    }

    /// The page as a string.
    public static func html(for report: EvaluationReport) throws -> String {
        var body = "<h1>\(escape(report.title))</h1>\n"
        body += "<p class=\"meta\">Created \(escape(report.createdAt)) · \(report.categories.count) "
            + (report.categories.count == 1 ? "category" : "categories")
            + (report.precision.map { " · precision \(escape($0))" } ?? "")
            + " · metrics as in docs/metrics.md (image AUROC, pixel AUROC, AUPRO up to FPR \(report.categories.first.map { format($0.fprLimit) } ?? "0.3"), F1-max), in percent</p>\n"
        let headlines = report.categories.compactMap { category in
            category.operatingPoint.map { "<li><b>\(escape(category.category))</b>: \(escape($0.headline))</li>" }
        }
        if !headlines.isEmpty {
            body += "<ul class=\"headline\">\n" + headlines.joined(separator: "\n") + "\n</ul>\n"
        }
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
        \(body)<div id="lightbox" hidden><img alt="enlarged"></div>
        <script>\(ReportScript.source)</script>
        </body>
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
    .flag { color: #b00; font-weight: 600; } .ok { color: #070; font-weight: 600; }
    .swatch { display: inline-block; width: 18px; height: 4px; vertical-align: middle; margin: 0 4px 0 10px; }
    ul.headline { font-size: 20px; padding-left: 20px; } ul.headline li { margin: 6px 0; }
    .tuner { border: 1px solid #ccc; border-radius: 6px; padding: 12px 16px; margin: 12px 0; max-width: 1000px; }
    .tuner svg { width: calc(100% - 16px); margin: 0 8px; height: 160px; display: block; } .tuner input[type=range] { width: 100%; margin: 0; }
    .tuner .axis { margin: 0 8px; display: flex; justify-content: space-between; font-size: 12px; color: #555; }
    .tuner pre { display: inline-block; background: #f4f4f4; padding: 6px 10px; margin: 4px 0; font-size: 15px; }
    .tuner .figures { font-size: 17px; } .affected a, .affected span { display: inline-block; margin: 2px 8px 2px 0; font-size: 13px; }
    table.rows td, table.rows th { vertical-align: top; text-align: left; } table.rows img { width: 200px; height: auto; display: block; cursor: zoom-in; }
    table.rows td.caption { width: 190px; font-size: 13px; overflow-wrap: anywhere; } .scalenote { font-size: 12px; color: #555; }
    .colorbar { display: inline-flex; align-items: center; gap: 8px; font-size: 13px; margin: 4px 0 8px; }
    .colorbar .bar { display: inline-block; width: 320px; height: 14px; border: 1px solid #999; }
    .colorbar .ticks { display: flex; justify-content: space-between; width: 320px; }
    #lightbox { position: fixed; inset: 0; background: rgba(0,0,0,0.85); display: flex; align-items: center; justify-content: center; cursor: zoom-out; }
    #lightbox[hidden] { display: none; } #lightbox img { max-width: 92vw; max-height: 92vh; min-width: 50vmin; image-rendering: auto; }
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
        html += operatingPointSection(category, index: index)

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

        html += imageRows(category, index: index, outputName: outputName)
        return html + "</section>\n"
    }

    static func figure(_ chart: RGBImage, alt: String, caption: String) throws -> String {
        let uri = dataURI(try PNGEncoder.encode(chart), mimeType: "image/png")
        return "<figure><img src=\"\(uri)\" alt=\"\(escape(alt))\" width=\"\(chart.width)\" height=\"\(chart.height)\"><figcaption>\(caption)</figcaption></figure>\n"
    }

    /// The headline, the confusion matrix at the production threshold, and the tuner: a slider
    /// over the score histogram (drawn by ReportScript from the scores embedded as JSON).
    static func operatingPointSection(_ category: CategoryReport, index: Int) -> String {
        guard !category.imageScores.isEmpty else { return "" }
        var html = ""
        if let point = category.operatingPoint {
            html += "<h3>At the production threshold</h3>\n<p class=\"figures\"><b>\(escape(point.headline))</b></p>\n"
            html += "<table class=\"confusion\">\n<caption>Confusion matrix at threshold \(format(point.threshold)) "
                + "(rejected: score ≥ threshold, as rstpmd decides)</caption>\n"
                + "<tr><th></th><th>images</th><th>passed (ok)</th><th>rejected (defect)</th><th>wrong</th></tr>\n"
            func row(_ row: OperatingPoint.Row, wrong: Int, summary: Bool = false) -> String {
                let rate = row.images > 0 ? " (\(OperatingPoint.percent(Double(wrong) / Double(row.images))))" : ""
                return "<tr\(summary ? " class=\"summary\"" : "")><td>\(escape(row.name))</td><td>\(row.images)</td><td>\(row.passed)</td>"
                    + "<td>\(row.rejected)</td><td>\(wrong)\(rate)</td></tr>\n"
            }
            html += row(point.good, wrong: point.good.rejected)
            for type in point.defectTypes { html += row(type, wrong: type.passed) }
            html += row(point.defects, wrong: point.defects.passed, summary: true)
            html += "</table>\n<p class=\"meta\">Wrong: good images rejected (false rejects), defective images passed (escapes). "
                + "Per-image scores: \(csvFileName) and report.json.</p>\n"
        }
        // The slider and the histogram span the scores and the threshold, 5% more on each side
        // (not below 0: rstpmd takes only positive thresholds), in 2000 steps; on a log10 axis
        // when the positive scores span more than a factor of 20 (good parts bunch near 0 while
        // defects reach far up). The production threshold lies on the slider's grid (min + n *
        // step), so the slider starts exactly there.
        let scores = category.imageScores.map(\.score).filter(\.isFinite)
        let ends = (scores + (category.threshold.map { [$0] } ?? [])).filter { $0 > 0 }
        let lowest = ends.min() ?? 0.5, highest = ends.max() ?? 1
        let logarithmic = highest / lowest > 20
        let axis: (Double) -> Double = logarithmic ? { log10($0) } : { $0 }
        let score: (Double) -> Double = logarithmic ? { pow(10, $0) } : { $0 }
        let pad = highest > lowest ? 0.05 * (axis(highest) - axis(lowest)) : max(0.05 * highest, 1e-6)
        let top = axis(highest) + pad, floor = logarithmic ? axis(lowest) - pad : max(axis(lowest) - pad, 0)
        let start = axis(category.threshold ?? (lowest + highest) / 2)
        let step = (top - floor) / 2000
        var bottom = start - ((start - floor) / step).rounded(.down) * step
        if !logarithmic && bottom <= 0 { bottom += step }
        var rows: [String: Int] = [:]
        for (position, item) in (category.worstGood + category.worstDefective).enumerated() where item.panels != nil {
            rows[item.image] = position
        }
        struct Entry: Encodable { let name: String, type: String, label: Int, score: Double, row: Int? }
        let entries = category.imageScores.map {
            Entry(name: "\($0.defectType)/\(URL(fileURLWithPath: $0.image).lastPathComponent)", type: $0.defectType, label: $0.label,
                  score: $0.score, row: rows[$0.image])
        }
        let json = (try? JSONEncoder().encode(entries)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        let id = "tuner-\(index)"
        html += "<h3>Threshold tuner</h3>\n<div class=\"tuner\" id=\"\(id)\" data-production=\"\(category.threshold.map { "\($0)" } ?? "")\" "
            + "data-axis=\"\(logarithmic ? "log" : "linear")\">\n"
            + "<script type=\"application/json\" class=\"scores\">\(json.replacingOccurrences(of: "</", with: "<\\/"))</script>\n"
            + "<svg class=\"histogram\" viewBox=\"0 0 1000 160\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"score histogram\"></svg>\n"
            + "<input type=\"range\" class=\"slider\" min=\"\(bottom)\" max=\"\(top)\" step=\"\(step)\" value=\"\(start)\" aria-label=\"threshold\">\n"
            + "<div class=\"axis\"><span>\(format(score(bottom)))</span><span>\(format(score((bottom + top) / 2)))\(logarithmic ? " (log scale)" : "")</span>"
            + "<span>\(format(score(top)))</span></div>\n"
            + "<p class=\"figures\">Threshold <b class=\"value\"></b>: <span class=\"rejects\"></span>; <span class=\"escapes\"></span>.</p>\n"
            + "<div>Paste into the line's stanza of rstpmd.yaml (<code>lines[].threshold</code>, docs/rstpmd.md): <pre class=\"config\"></pre> "
            + "<button type=\"button\" class=\"reset\">back to the production threshold</button></div>\n"
            + "<table class=\"types\"></table>\n<div class=\"affected\"></div>\n"
            + "<p class=\"meta\">Histogram: good images blue, defective orange; solid line: the slider, dashed: the production threshold. "
            + "Drag the slider or use the arrow keys; the figures follow.</p>\n</div>\n"
        return html
    }

    /// Rows of original | heatmap | ground truth | predicted mask for the worst cases, with the
    /// colour bar and the switch to per-image colour scales.
    static func imageRows(_ category: CategoryReport, index: Int, outputName: String) -> String {
        let cases = category.worstGood + category.worstDefective
        guard cases.contains(where: { $0.panels != nil }) else { return "" }
        let top = category.threshold.map { 2 * $0 } ?? (category.imageScores.map(\.score).max() ?? 1)
        var html = "<h3>Images</h3>\n<p class=\"meta\">The \(category.worstGood.count) highest-scored good images and the "
            + "\(category.worstDefective.count) lowest-scored defective images (<code>--worst N</code> shows more), with the "
            + "\(escape(outputName)) map over the image: turbo colours, more opaque where higher; white outline: region at or above "
            + "the threshold. Click an image to enlarge it.</p>\n"
        let stops = stride(from: 0, through: 10, by: 1).map { step -> String in
            let (r, g, b) = Heatmap.turbo(Float(step) / 10)
            return String(format: "#%02x%02x%02x %d%%", Int(r * 255 + 0.5), Int(g * 255 + 0.5), Int(b * 255 + 0.5), step * 10)
        }.joined(separator: ", ")
        let middle = category.threshold.map { "threshold \(format($0))" } ?? format(top / 2)
        html += "<div class=\"colorbar\" id=\"colorbar-\(index)\"><span>score</span><span><span class=\"bar\" style=\"background: linear-gradient(to right, \(stops))\"></span>"
            + "<span class=\"ticks\" data-category=\"0|\(escape(middle))|\(format(top))\" data-own=\"0|half the image's maximum|the image's maximum\">"
            + "<span>0</span><span>\(escape(middle))</span><span>\(format(top))</span></span></span></div>\n"
        html += "<p><label><input type=\"checkbox\" class=\"own-scale\" data-category=\"\(index)\"> Colour each heatmap on its own scale "
            + "(0 to the image's maximum; one scale for the category leaves weak maps almost uncoloured and saturates strong ones)</label></p>\n"
        html += "<table class=\"rows\" id=\"rows-\(index)\">\n<tr><th></th><th>original</th><th>heatmap</th><th>ground truth</th><th>predicted mask</th></tr>\n"
        for (position, item) in cases.enumerated() {
            guard let panels = item.panels else { continue }
            let name = URL(fileURLWithPath: item.image).lastPathComponent
            var verdict = ""
            if let threshold = category.threshold {
                let flagged = ImageScore(image: item.image, defectType: item.defectType, label: item.label, score: item.score).isRejected(at: threshold)
                let correct = flagged == (item.label != 0)
                verdict = " <span class=\"\(correct ? "ok" : "flag")\">\(flagged ? "rejected" : "passed")</span>"
            }
            func picture(_ data: Data, _ mime: String, _ alt: String, extra: String = "") -> String {
                "<img src=\"\(dataURI(data, mimeType: mime))\" alt=\"\(escape(alt)) \(escape(name))\"\(extra)>"
            }
            let own = " data-other=\"\(dataURI(panels.ownScaleHeatmap, mimeType: "image/jpeg"))\" class=\"heat\""
            html += "<tr id=\"row-\(index)-\(position)\"><td class=\"caption\">\(escape(item.defectType))/\(escape(name))<br>score \(format(item.score))\(verdict)</td>"
                + "<td>\(picture(panels.original, "image/jpeg", "original"))</td>"
                + "<td>\(picture(panels.heatmap, "image/jpeg", "heatmap", extra: own))"
                + "<span class=\"scalenote\" data-category=\"scale 0 to \(format(top))\" data-own=\"scale 0 to \(format(panels.ownScaleMaximum))\">scale 0 to \(format(top))</span></td>"
                + "<td>\(picture(panels.groundTruth, "image/png", "ground truth"))</td>"
                + "<td>\(panels.predictedMask.map { picture($0, "image/png", "predicted mask") } ?? "–")</td></tr>\n"
        }
        return html + "</table>\n"
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
