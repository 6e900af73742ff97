import Foundation
import RSTPM
import TensorEngine

/// The inference precision rstpmd runs one line's model in: an operator's RSTPM_PRECISION
/// when set, else the fastest precision whose accuracy check (`BundleManifest.precisions`,
/// written by `rstpm train`) passed and that runs on this CPU's kernel set, else f32 (the
/// reference, also for bundles trained before the check). `reason` says why, for the journal.
public struct PrecisionChoice: Equatable, Sendable {
    public var precision: Precision
    public var reason: String

    /// Fastest first; f32 last, as it always runs.
    static let fastestFirst: [Precision] = [.bf16, .f32]

    /// `operatorChoice`: the precision the operator set (`RSTPM_PRECISION`, already checked at
    /// start-up to run here), or nil. `kernelSet`: the engine's, whose CPU decides what runs.
    public static func choose(for manifest: BundleManifest, operatorChoice: Precision? = PrecisionChoice.operatorChoice,
                              kernelSet: KernelSet = Engine.kernelSet) -> PrecisionChoice {
        if let operatorChoice {
            return PrecisionChoice(precision: operatorChoice, reason: "RSTPM_PRECISION=\(operatorChoice.rawValue) set by the operator (the model's check is not consulted)")
        }
        var skipped: [String] = []
        for precision in fastestFirst where precision != .f32 {
            guard let check = manifest.precisions?[precision.rawValue] else {
                skipped.append("\(precision.rawValue) not checked (the bundle has no record; retrain with this rstpm on a CPU that runs it)")
                continue
            }
            guard check.passed else {
                skipped.append("\(precision.rawValue) check \(check.summary)")
                continue
            }
            if let problem = precision.problem(on: kernelSet) {
                skipped.append("\(precision.rawValue) check passed but cannot run here: \(problem)")
                continue
            }
            return PrecisionChoice(precision: precision, reason: "the model's \(precision.rawValue) check \(check.summary)")
        }
        return PrecisionChoice(precision: .f32, reason: "f32, the reference: " + skipped.joined(separator: "; "))
    }

    /// RSTPM_PRECISION when set and not empty (the engine has then validated it and runs it);
    /// nil lets each model's check decide.
    public static var operatorChoice: Precision? {
        guard let value = ProcessInfo.processInfo.environment["RSTPM_PRECISION"], !value.isEmpty else { return nil }
        return Engine.precision
    }
}
