// The work queue across a crash: the in-flight record on disk, and the inputs a crash is
// blamed on.
import DaemonSupport
import Foundation
import SystemPackage

extension WorkQueue {
    /// The inputs being inspected and the crash counts, kept on disk so the next start sees
    /// what was in flight when the process died.
    struct InFlightRecord: Codable {
        var inFlight: [String] = []
        var crashes: [String: Int] = [:]
    }

    /// What a crash left: when `crashed` (the crash marker is there), every input of the
    /// in-flight record still in work/ counts one more crash, and the suspects are inspected
    /// alone from now on. Without the marker (SIGKILL, SIGTERM, power cut; or a reload, the
    /// daemon being alive) nothing counts: those inputs are simply retried, and earlier counts
    /// are kept. Returns how many inputs the record had in flight.
    func accountForCrash(crashed: Bool) -> Int {
        var record = readInFlightRecord()
        let present = Set(((try? items()) ?? []).map(\.name))
        if crashed {
            for name in record.inFlight where present.contains(name) { record.crashes[name, default: 0] += 1 }
        }
        lock.lock(); crashCounts = record.crashes.filter { present.contains($0.key) }; lock.unlock()
        // Nothing is in flight until the first batch; a stale list would be blamed for a crash
        // before it.
        writeInFlightRecord(inFlight: [])
        return record.inFlight.count
    }

    /// The inputs that were in flight at `crashLimit` crashes or more, with their counts.
    func crashSuspectsAtLimit() -> [String: Int] {
        lock.lock(); defer { lock.unlock() }
        return crashCounts.filter { $0.value >= Self.crashLimit }
    }

    func readInFlightRecord() -> InFlightRecord {
        guard let bytes = try? files.readFile(inFlightRecordPath, maximumBytes: 64 << 20),
              let record = try? JSONDecoder().decode(InFlightRecord.self, from: Data(bytes))
        else { return InFlightRecord() }
        return record
    }

    /// Writes the record durably (a crash right after must find it): before a batch starts,
    /// and when inputs leave the flight, so an input waiting for a retry is not blamed for a
    /// crash in another's inspection. Serialised by `inFlightRecordLock`.
    func writeInFlightRecord(inFlight: Set<String>? = nil) {
        inFlightRecordLock.lock(); defer { inFlightRecordLock.unlock() }
        lock.lock()
        let record = InFlightRecord(inFlight: (inFlight ?? inputsInFlight).sorted(), crashes: crashCounts)
        lock.unlock()
        do {
            try files.writeDurably(Array(try JSONEncoder().encode(record)), to: inFlightRecordPath)
        } catch {
            logger.event(.retrying, .warning, "cannot write the in-flight record: \(error); a crash now would not be traced to its input",
                         ["image.path": "\(inFlightRecordPath)", "errno": "\(error)"])
        }
    }
}
