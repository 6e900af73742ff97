import Logging

/// rstpmd's journal events, the daemon's and learning's alike. Each has a fixed 128-bit
/// MESSAGE_ID, so operators can select one kind with `journalctl MESSAGE_ID=...` whatever the
/// message text says; journald consumers depend on them, so they never change.
public enum JournalEvent: String, CaseIterable, Sendable {
    // The daemon's lines and service.
    case started = "be66c60759b14810b48cf8db62453298"
    case verdict = "7cfe5971ae814086862510b581359fab"
    case quarantined = "7bc0243fd47d4a4dae5d0eb250777a3a"
    case retrying = "9bdb7eb8048b440daf715220125063c3"
    /// Not decodable at the first look; looked at again once it stays unchanged.
    case secondLook = "3d3ee6a638344a0fab65d9c67629639e"
    case claimLost = "31d2acc80bf1480a8f69bd34d6469ad4"
    case recovered = "945e0543389c4779bde38b46a8492ea6"
    case reloaded = "bf822c631eab460eb1e8a3191fa21ef4"
    case reloadFailed = "b1d11b61f09e4666926ddb2d5b6bf421"
    case stopping = "23a54459597e4582ab0c57039a57a152"
    case watcherFailed = "467c635b6d3a47fe94dee7aa4334462d"
    case metricsFailed = "0090dbb0f521432fae100eb09c1ce031"
    case ignoredEntry = "acc667b9209a4bd8bbc40a1470c3714e"
    /// A folder's file system fell below `min_free_space`: the line claims nothing more.
    case intakePaused = "30784269306c4d4cb921f72a8dcd564c"
    /// Space came back: the line claims again.
    case intakeResumed = "e0c693e2522a4a1280aacaceeb075e1d"
    /// Retention removed old outputs, archived or quarantined inputs.
    case retentionPruned = "4282bf78d6d147129fd0a49debc6a253"
    /// The inference precision a line's model runs in, and why (its accuracy check, or RSTPM_PRECISION).
    case precisionChosen = "2e3e1b27266d42c09dfa39469555c84b"

    // Continuous learning.
    case accepted = "8981890d098f44b98472c8372cf93f3d"
    case trainingStarted = "725090e5dacd4ba2a6fb77cf0a414788"
    case trainingProgress = "dcb149832fdc4603a4d3410c7ae02c40"
    case trainingFailed = "ecd57e9ed29c4be69ff57784f508bdb6"
    case gateAccepted = "ced21c2b65954d2eb15aff6c092bff83"
    case gateRejected = "aae1231617344618805aefa5158929b2"
    case modelSwapped = "3879078299f5465fbbd298f41bfc501a"
    case learningFailed = "07ede1a81a214950b88b034fb2fb44ce"

    /// The metadata value for the `MESSAGE_ID` journal field.
    public var messageID: Logger.MetadataValue { .string(rawValue) }
}

extension Logger {
    /// Logs one journal event with its MESSAGE_ID and structured fields.
    public func event(_ event: JournalEvent, _ level: Logger.Level, _ message: @autoclosure () -> Logger.Message, _ fields: Logger.Metadata = [:],
                      file: String = #fileID, function: String = #function, line: UInt = #line) {
        var metadata = fields
        metadata["MESSAGE_ID"] = event.messageID
        log(level: level, message(), metadata: metadata, file: file, function: function, line: line)
    }
}
