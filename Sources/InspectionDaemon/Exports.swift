// The file-system layer (Syscalls, FileOperations) and SHA256 live in ContinuousLearning, which
// the daemon calls into; re-exported so users of InspectionDaemon see them as before.
@_exported import ContinuousLearning
