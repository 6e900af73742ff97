import Foundation
import Hummingbird
import InspectionDaemon
import OperatorErrors

/// The page and its JSON API.
///
///     GET  /                                   the page (and /app.js, /app.css)
///     GET  /api/session                        reviewer, CSRF token, lines
///     GET  /api/lines/LINE/queue?...           verdicts, most uncertain first
///     GET  /api/lines/LINE/items/ITEM/image    the archived input
///     GET  /api/lines/LINE/items/ITEM/heatmap  the heatmap PNG
///     POST /api/lines/LINE/items/ITEM/answer   {"answer": "normal|defect|skip", "request_id", "label", "note", "reviewer"}
///     POST /api/lines/LINE/items/ITEM/undo     {"request_id", "reviewer"}
///     GET  /api/lines/LINE/summary             counts, reject rate, agreement, models, learning
///     GET  /api/lines/LINE/log?limit=N         the newest review records
///
/// ITEM is the verdict's file name in the outbox without `.json`, percent-encoded.
struct ReviewRoutes {
    let station: ReviewStation

    func register(on router: Router<ReviewContext>) {
        router.get("/") { _, _ in asset(PageAssets.html, type: "text/html; charset=utf-8") }
        router.get("/app.js") { _, _ in asset(PageAssets.script, type: "text/javascript; charset=utf-8") }
        router.get("/app.css") { _, _ in asset(PageAssets.style, type: "text/css; charset=utf-8") }
        router.get("/api/session") { _, context in session(context) }
        router.get("/api/lines/:line/queue") { request, context in try queue(request, context) }
        router.get("/api/lines/:line/items/:item/image") { _, context in try image(context) }
        router.get("/api/lines/:line/items/:item/heatmap") { _, context in try heatmap(context) }
        router.post("/api/lines/:line/items/:item/answer") { request, context in try await answer(request, context) }
        router.post("/api/lines/:line/items/:item/undo") { request, context in try await undo(request, context) }
        router.get("/api/lines/:line/summary") { _, context in try jsonResponse(desk(context).summary()) }
        router.get("/api/lines/:line/log") { request, context in
            let limit = request.uri.queryParameters.get("limit", as: Int.self) ?? 100
            return try jsonResponse(Array(desk(context).records.suffix(max(0, min(limit, 10_000))).reversed()))
        }
    }

    struct LineView: Encodable {
        var name: String
        var accepts: Bool
        var keepsDefects: Bool
        enum CodingKeys: String, CodingKey { case name, accepts; case keepsDefects = "keeps_defects" }
    }

    struct SessionView: Encodable {
        var reviewer: String?
        var authenticated: Bool
        var csrf: String
        var lines: [LineView]
    }

    func session(_ context: ReviewContext) -> Response {
        jsonResponse(SessionView(
            reviewer: context.reviewer?.name, authenticated: context.reviewer != nil, csrf: station.csrfToken(for: context.reviewer),
            lines: station.desks.map { LineView(name: $0.line.name, accepts: $0.line.learning != nil, keepsDefects: $0.line.learning?.defects != nil) }))
    }

    func desk(_ context: ReviewContext) throws -> ReviewDesk {
        try station.desk(context.parameters.require("line"))
    }

    /// The ITEM segment, percent-decoded; a decoded `/`, NUL, `.`/`..` or hidden name is refused
    /// here (and again where files are opened).
    func item(_ context: ReviewContext) throws -> String {
        let raw = try context.parameters.require("item")
        guard let decoded = raw.removingPercentEncoding, LineFiles.plainName(decoded) != nil else {
            throw OperatorError(.notFound, path: raw, problem: "not an item name", hint: "items are verdict file names")
        }
        return decoded
    }

    struct ItemView: Encodable {
        var item: String
        var file: String
        var verdict: String
        var score: Float?
        var threshold: Float?
        var thresholdSource: String?
        var model: ModelIdentity
        var decidedAt: String
        var regions: [AnomalyRegion]
        var regionsTruncated: Bool
        var size: Verdict.Size
        var error: Verdict.Failure?
        var hasImage: Bool
        var hasHeatmap: Bool
        var uncertainty: Double?
        var answer: ReviewRecord?

        enum CodingKeys: String, CodingKey {
            case item, file, verdict, score, threshold, model, regions, size, error, uncertainty, answer
            case thresholdSource = "threshold_source"
            case decidedAt = "decided_at"
            case regionsTruncated = "regions_truncated"
            case hasImage = "has_image"
            case hasHeatmap = "has_heatmap"
        }

        init(_ queued: QueueItem) {
            let verdict = queued.verdict
            item = queued.item
            file = verdict.file
            self.verdict = verdict.verdict.rawValue
            score = verdict.score
            threshold = verdict.threshold?.value
            thresholdSource = verdict.threshold?.source.rawValue
            model = verdict.model
            decidedAt = verdict.decidedAt
            regions = verdict.regions
            regionsTruncated = verdict.regionsTruncated
            size = verdict.size
            error = verdict.error
            hasImage = queued.hasImage
            hasHeatmap = queued.hasHeatmap
            uncertainty = queued.uncertainty.isFinite ? queued.uncertainty : nil
            answer = queued.answer
        }
    }

    struct QueueView: Encodable {
        var line: String
        var total: Int
        var items: [ItemView]
    }

    func queue(_ request: Request, _ context: ReviewContext) throws -> Response {
        let desk = try desk(context)
        let query = request.uri.queryParameters
        var filter = QueueFilter()
        if let decisions = query.get("verdict"), !decisions.isEmpty {
            filter.decisions = Set(decisions.split(separator: ",").compactMap { Verdict.Decision(rawValue: String($0)) })
        }
        filter.minimumScore = query.get("min", as: Float.self)
        filter.maximumScore = query.get("max", as: Float.self)
        filter.fromDay = query.get("from").flatMap { $0.isEmpty ? nil : $0 }
        filter.toDay = query.get("to").flatMap { $0.isEmpty ? nil : $0 }
        filter.answered = query.get("answered").flatMap(QueueFilter.Answered.init(rawValue:)) ?? .no
        filter.limit = min(query.get("limit", as: Int.self) ?? 200, 2000)
        let items = try desk.queue(filter)
        return jsonResponse(QueueView(line: desk.line.name, total: items.count, items: items.map(ItemView.init)))
    }

    func image(_ context: ReviewContext) throws -> Response {
        let (bytes, name) = try desk(context).image(item(context))
        return fileResponse(bytes, type: Self.imageType(of: name))
    }

    func heatmap(_ context: ReviewContext) throws -> Response {
        fileResponse(try desk(context).heatmap(item(context)), type: "image/png")
    }

    static func imageType(of name: String) -> String {
        switch name.split(separator: ".").last?.lowercased() ?? "" {
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "bmp": return "image/bmp"
        case "gif": return "image/gif"
        case "webp": return "image/webp"
        case "tif", "tiff": return "image/tiff"
        default: return "application/octet-stream"
        }
    }

    struct AnswerBody: Decodable {
        var answer: String?
        var requestID: String
        var label: String?
        var note: String?
        var reviewer: String?
        enum CodingKeys: String, CodingKey { case answer, label, note, reviewer; case requestID = "request_id" }
    }

    func body(_ request: Request) async throws -> AnswerBody {
        var request = request
        let buffer = try await request.collectBody(upTo: 64 << 10)
        guard let body = try? JSONDecoder().decode(AnswerBody.self, from: Data(buffer.readableBytesView)) else {
            throw OperatorError(.invalidInput, path: request.uri.path, problem: "the body is not an answer", hint: "send {\"answer\": ..., \"request_id\": ...}")
        }
        guard (8...64).contains(body.requestID.count), body.requestID.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw OperatorError(.invalidInput, path: request.uri.path, problem: "request_id must be 8 to 64 letters, digits or -", hint: "the page makes one per click")
        }
        for (text, limit, key) in [(body.label, 200, "label"), (body.note, 2000, "note"), (body.reviewer, 64, "reviewer")] {
            if let text, text.count > limit || text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control && $0 != "\n" }) {
                throw OperatorError(.invalidInput, path: request.uri.path, problem: "\(key) is longer than \(limit) characters or holds control characters", hint: "shorten it")
            }
        }
        return body
    }

    /// The reviewer list's name, else the name the page sent (recorded as not authenticated).
    func reviewer(_ context: ReviewContext, _ body: AnswerBody) -> Reviewer {
        if let checked = context.reviewer { return checked }
        let sent = body.reviewer?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return Reviewer(name: sent.isEmpty ? "local" : sent, authenticated: false)
    }

    func answer(_ request: Request, _ context: ReviewContext) async throws -> Response {
        let body = try await body(request)
        guard let answer = body.answer.flatMap(ReviewRecord.Answer.init(rawValue:)), answer != .undo else {
            throw OperatorError(.invalidInput, path: request.uri.path, problem: "answer must be normal, defect or skip", hint: "")
        }
        let label = body.label?.trimmingCharacters(in: .whitespacesAndNewlines)
        let note = body.note?.trimmingCharacters(in: .whitespacesAndNewlines)
        let record = try desk(context).answer(try item(context), answer, label: label?.isEmpty == false ? label : nil, note: note?.isEmpty == false ? note : nil,
                                             reviewer: reviewer(context, body), requestID: body.requestID)
        return jsonResponse(record)
    }

    func undo(_ request: Request, _ context: ReviewContext) async throws -> Response {
        let body = try await body(request)
        return jsonResponse(try desk(context).undo(try item(context), reviewer: reviewer(context, body), requestID: body.requestID))
    }
}

func asset(_ text: String, type: String) -> Response {
    var response = Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: text)))
    response.headers[.cacheControl] = "no-cache"
    return response
}

func fileResponse(_ bytes: [UInt8], type: String) -> Response {
    var response = Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    response.headers[.cacheControl] = "private, max-age=300"
    return response
}
