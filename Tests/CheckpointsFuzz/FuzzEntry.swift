// libFuzzer entry point for the Checkpoints parsers. Not a SwiftPM target (a fuzzer build has no
// main and needs -sanitize=fuzzer): it is compiled together with the module's sources, unoptimized
// so Swift's bounds and overflow traps stay on, plus AddressSanitizer. A crash, a leak or an error
// other than CheckpointError stops the fuzzer. From the repository root:
//
//   swiftc -sanitize=fuzzer,address -parse-as-library -g -module-name CheckpointsFuzz \
//       Sources/Checkpoints/*.swift Tests/CheckpointsFuzz/FuzzEntry.swift -o .build/checkpoints-fuzz
//   mkdir -p .build/fuzz-corpus && cp Tests/Fixtures/checkpoints/*fix .build/fuzz-corpus/
//   .build/checkpoints-fuzz .build/fuzz-corpus -max_len=8192 -max_total_time=300

@_cdecl("LLVMFuzzerTestOneInput")
public func checkpointsFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        _ = try TorchCheckpoint.load(bytes: bytes, path: "fuzz-input")
    } catch is CheckpointError {
    } catch {
        fatalError("TorchCheckpoint threw an untyped error: \(error)")
    }
    do {
        _ = try SafeTensors.read(bytes: bytes, path: "fuzz-input")
    } catch is CheckpointError {
    } catch {
        fatalError("SafeTensors threw an untyped error: \(error)")
    }
    return 0
}
