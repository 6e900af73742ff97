import ContinuousLearning
import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage

/// The line summary page's figures.
public struct LineSummary: Encodable, Sendable {
    public struct DayCounts: Encodable, Sendable, Equatable {
        public var day: String
        public var ok = 0
        public var defect = 0
        public var error = 0
        /// defect / (ok + defect); nil on a day without decided images.
        public var rejectRate: Double? { ok + defect > 0 ? Double(defect) / Double(ok + defect) : nil }

        enum CodingKeys: String, CodingKey { case day, ok, defect, error, rejectRate = "reject_rate" }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(day, forKey: .day)
            try container.encode(ok, forKey: .ok)
            try container.encode(defect, forKey: .defect)
            try container.encode(error, forKey: .error)
            try container.encode(rejectRate, forKey: .rejectRate)
        }
    }

    public struct Agreement: Encodable, Sendable, Equatable {
        /// Live normal/defect answers (skips are not opinions).
        public var answered = 0
        /// Answered normal where the model said defect (false alarms).
        public var normalButDefect = 0
        /// Answered defect where the model said ok (misses).
        public var defectButOk = 0
        public var skipped = 0
        public var disagreementRate: Double? { answered > 0 ? Double(normalButDefect + defectButOk) / Double(answered) : nil }

        enum CodingKeys: String, CodingKey {
            case answered
            case normalButDefect = "normal_but_defect"
            case defectButOk = "defect_but_ok"
            case skipped
            case disagreementRate = "disagreement_rate"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(answered, forKey: .answered)
            try container.encode(normalButDefect, forKey: .normalButDefect)
            try container.encode(defectButOk, forKey: .defectButOk)
            try container.encode(skipped, forKey: .skipped)
            try container.encode(disagreementRate, forKey: .disagreementRate)
        }
    }

    public struct ModelVersionRow: Encodable, Sendable, Equatable {
        public var version: String
        public var current: Bool
        /// The gate's decision, nil for a bundle put in by hand.
        public var decision: String?
        public var reason: String?
        public var decidedAt: String?
        public var falseRejectRate: Double?
        public var auroc: Double?

        enum CodingKeys: String, CodingKey {
            case version, current, decision, reason
            case decidedAt = "decided_at"
            case falseRejectRate = "false_reject_rate"
            case auroc
        }
    }

    public struct Learning: Encodable, Sendable, Equatable {
        public var enabled: Bool
        /// Files waiting in accepted/ for the next check.
        public var waitingInAccepted = 0
        public var newImagesSinceTraining = 0
        public var minimumNewImages = 0
        public var window: String?
        public var retrainRequested = false
        public var runInProgress = false

        enum CodingKeys: String, CodingKey {
            case enabled
            case waitingInAccepted = "waiting_in_accepted"
            case newImagesSinceTraining = "new_images_since_training"
            case minimumNewImages = "min_new_images"
            case window
            case retrainRequested = "retrain_requested"
            case runInProgress = "run_in_progress"
        }
    }

    public var line: String
    public var today: DayCounts
    /// The last 14 days, oldest first.
    public var days: [DayCounts]
    public var agreement: Agreement
    /// Model store versions, oldest first; empty for a single bundle.
    public var models: [ModelVersionRow]
    public var learning: Learning
}

extension ReviewDesk {
    public func summary(now: Date = Date()) throws -> LineSummary {
        let items = try allItems()
        let dayFormatter = DateFormatter()
        dayFormatter.locale = Locale(identifier: "en_US_POSIX")
        dayFormatter.timeZone = TimeZone(identifier: "UTC")
        dayFormatter.dateFormat = "yyyy-MM-dd"
        let dayNames = (0..<14).reversed().map { dayFormatter.string(from: now.addingTimeInterval(-Double($0) * 86400)) }
        var days = Dictionary(uniqueKeysWithValues: dayNames.map { ($0, LineSummary.DayCounts(day: $0)) })
        for item in items {
            let day = String(item.verdict.decidedAt.prefix(10))
            guard days[day] != nil else { continue }
            switch item.verdict.verdict {
            case .ok: days[day]!.ok += 1
            case .defect: days[day]!.defect += 1
            case .error: days[day]!.error += 1
            }
        }
        var agreement = LineSummary.Agreement()
        for item in items {
            guard let answer = item.answer else { continue }
            switch answer.answer {
            case .skip: agreement.skipped += 1
            case .normal:
                agreement.answered += 1
                if item.verdict.verdict == .defect { agreement.normalButDefect += 1 }
            case .defect:
                agreement.answered += 1
                if item.verdict.verdict == .ok { agreement.defectButOk += 1 }
            case .undo: break
            }
        }
        var models: [LineSummary.ModelVersionRow] = []
        if ModelStore.isStore(line.modelBundle, syscalls: files.syscalls) {
            let store = ModelStore(root: line.modelBundle, syscalls: files.syscalls)
            let current = try? store.current()?.name
            for version in (try? store.versions()) ?? [] {
                models.append(LineSummary.ModelVersionRow(
                    version: version.name, current: version.name == current, decision: version.gate?.decision.rawValue,
                    reason: version.gate?.reason, decidedAt: version.gate?.decidedAt,
                    falseRejectRate: version.gate?.candidate.falseRejectRate, auroc: version.gate?.candidate.auroc))
            }
        }
        var learning = LineSummary.Learning(enabled: line.learning != nil)
        if let configuration = line.learning {
            learning.minimumNewImages = configuration.minimumNewImages
            learning.window = configuration.window.map { "\($0)" }
            learning.waitingInAccepted = ((try? files.syscalls.listDirectory(configuration.accepted)) ?? []).filter { !$0.hasPrefix(".") }.count
            if let counters = try? TrainingStore.readCounters(root: configuration.trainingStore, syscalls: files.syscalls) {
                learning.newImagesSinceTraining = counters.newImagesSinceTraining
                learning.retrainRequested = counters.retrainRequested
                learning.runInProgress = counters.runInProgress
            }
        }
        return LineSummary(line: line.name, today: days[dayNames.last!]!, days: dayNames.map { days[$0]! }, agreement: agreement,
                           models: models, learning: learning)
    }
}
