// The file-system layer (Syscalls, FileOperations) lives in ContinuousLearning, which
// the daemon calls into; re-exported so users of InspectionDaemon see them as before.
@_exported import ContinuousLearning
