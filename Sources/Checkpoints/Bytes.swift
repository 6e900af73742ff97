// Bounds-checked reading of untrusted bytes and the element types tensors are stored in.

/// A cursor over a byte range of `bytes`; every read checks the range first and throws
/// `FormatFailure.truncated` instead of reading past it.
struct ByteReader {
    let bytes: [UInt8]
    private(set) var position: Int
    let end: Int
    /// Names the structure being read, for error messages ("data.pkl", "zip central directory").
    let context: String

    init(_ bytes: [UInt8], range: Range<Int>? = nil, context: String) {
        self.bytes = bytes
        let range = range ?? 0..<bytes.count
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count, "reader range outside its bytes")
        self.position = range.lowerBound
        self.end = range.upperBound
        self.context = context
    }

    var remaining: Int { end - position }

    mutating func seek(to offset: Int) throws {
        guard offset >= 0, offset <= end else { throw FormatFailure.truncated("\(context): offset \(offset) is past the end (\(end))") }
        position = offset
    }

    mutating func skip(_ count: Int) throws {
        guard count >= 0, count <= remaining else { throw FormatFailure.truncated("\(context): needs \(count) more bytes at offset \(position), has \(remaining)") }
        position += count
    }

    /// The next `count` bytes as a range into `bytes`.
    mutating func take(_ count: Int) throws -> Range<Int> {
        let start = position
        try skip(count)
        return start..<position
    }

    mutating func uint8() throws -> UInt8 {
        guard remaining >= 1 else { throw FormatFailure.truncated("\(context): ends at offset \(position) inside a value") }
        defer { position += 1 }
        return bytes[position]
    }

    /// Unsigned little-endian integer of `width` bytes (1...8).
    mutating func littleEndian(width: Int) throws -> UInt64 {
        let range = try take(width)
        var value: UInt64 = 0
        for index in range.reversed() { value = value << 8 | UInt64(bytes[index]) }
        return value
    }

    mutating func uint16() throws -> UInt16 { UInt16(try littleEndian(width: 2)) }
    mutating func uint32() throws -> UInt32 { UInt32(try littleEndian(width: 4)) }
    mutating func uint64() throws -> UInt64 { try littleEndian(width: 8) }

    /// A count or offset stored as u64; refuses values that do not fit an Int.
    mutating func size64() throws -> Int {
        let value = try uint64()
        guard value <= UInt64(Int.max) else { throw FormatFailure.malformed("\(context): size \(value) at offset \(position - 8) is out of range") }
        return Int(value)
    }
}

/// Element types of torch storages and safetensors, all converted to Float32 on load.
enum ElementType {
    case float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool

    var byteCount: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// torch.<Name>Storage class names.
    init?(torchStorage name: String) {
        switch name {
        case "FloatStorage": self = .float32
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "DoubleStorage": self = .float64
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }

    /// torch.<dtype> names, which newer files may reference as plain values.
    init?(torchDType name: String) {
        switch name {
        case "float32", "float": self = .float32
        case "float16", "half": self = .float16
        case "bfloat16": self = .bfloat16
        case "float64", "double": self = .float64
        case "int64", "long": self = .int64
        case "int32", "int": self = .int32
        case "int16", "short": self = .int16
        case "int8": self = .int8
        case "uint8": self = .uint8
        case "bool": self = .bool
        default: return nil
        }
    }

    /// safetensors dtype codes that this reader accepts.
    init?(safetensors code: String) {
        switch code {
        case "F32": self = .float32
        case "F16": self = .float16
        case "BF16": self = .bfloat16
        case "F64": self = .float64
        case "I64": self = .int64
        case "I32": self = .int32
        case "I16": self = .int16
        case "I8": self = .int8
        case "U8": self = .uint8
        case "BOOL": self = .bool
        default: return nil
        }
    }

    /// Reads element `index` of the little-endian array starting at byte `base`; the caller has
    /// checked that the element lies inside `raw`.
    @inline(__always)
    func load(_ raw: UnsafeRawBufferPointer, base: Int, index: Int) -> Float {
        let offset = base + index * byteCount
        switch self {
        case .float32: return Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        case .float16: return floatFromHalf(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
        case .bfloat16: return Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))) << 16)
        case .float64: return Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))))
        case .int64: return Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
        case .int32: return Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
        case .int16: return Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int16.self)))
        case .int8: return Float(Int8(bitPattern: raw[offset]))
        case .uint8: return Float(raw[offset])
        case .bool: return raw[offset] == 0 ? 0 : 1
        }
    }
}

/// IEEE 754 binary16 to binary32, exact (written out because Float16 is missing on some hosts).
func floatFromHalf(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = UInt32(bits >> 10) & 0x1f
    let mantissa = UInt32(bits & 0x3ff)
    if exponent == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | mantissa << 13) }  // inf, nan
    if exponent != 0 { return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13) }
    // Subnormal half: mantissa * 2^-24, exact in Float.
    let magnitude = Float(mantissa) * 0x1p-24
    return sign == 0 ? magnitude : -magnitude
}

/// Elements in a shape, or nil if the product overflows or a dimension is negative.
func elementCount(_ shape: [Int]) -> Int? {
    var count = 1
    for dimension in shape {
        guard dimension >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
        guard !overflow else { return nil }
        count = product
    }
    return count
}

/// Copies a strided view of a storage into a C-contiguous Float32 array.
///
/// `storage` is the byte range of the storage inside `bytes`; `offset`, `shape`, `stride` are in
/// elements as torch's `_rebuild_tensor_v2` gives them. Every element the view touches is checked
/// to lie inside the storage before any is read.
func materialize(bytes: [UInt8], storage: Range<Int>, type: ElementType, offset: Int, shape: [Int], stride: [Int]) throws -> StoredTensor {
    guard shape.count == stride.count else { throw FormatFailure.malformed("tensor has \(shape.count) sizes but \(stride.count) strides") }
    guard let count = elementCount(shape) else { throw FormatFailure.malformed("tensor shape \(shape) is invalid") }
    let storageCount = storage.count / type.byteCount
    guard offset >= 0, stride.allSatisfy({ $0 >= 0 }) else { throw FormatFailure.malformed("tensor offset \(offset) or strides \(stride) are negative") }
    if count == 0 { return StoredTensor(shape: shape, values: []) }
    // Highest element index the view reaches: offset + sum((size - 1) * stride).
    var last = offset
    for (size, step) in zip(shape, stride) {
        let (span, spanOverflow) = (size - 1).multipliedReportingOverflow(by: step)
        let (sum, sumOverflow) = last.addingReportingOverflow(span)
        guard !spanOverflow, !sumOverflow else { throw FormatFailure.malformed("tensor strides \(stride) overflow") }
        last = sum
    }
    guard last < storageCount else {
        throw FormatFailure.malformed("storage holds \(storageCount) elements but the tensor of shape \(shape), stride \(stride), offset \(offset) reaches element \(last)",
                                      hint: "the storage is shorter than its tensor: the file is corrupt or truncated")
    }
    // Only a view that repeats elements (stride 0, as from expand) holds more values than its
    // storage; cap those so a tiny file cannot demand gigabytes.
    guard count <= max(storageCount, 1 << 24) else {
        throw FormatFailure(kind: .unsupported, reason: "tensor of shape \(shape) repeats the \(storageCount) elements of its storage (strides \(stride))",
                            hint: "save tensor.contiguous() instead of an expanded view")
    }
    var values = [Float](repeating: 0, count: count)
    bytes.withUnsafeBytes { raw in
        let base = storage.lowerBound
        let contiguous = stride == contiguousStrides(shape)
        values.withUnsafeMutableBufferPointer { out in
            if contiguous {
                for i in 0..<count { out[i] = type.load(raw, base: base, index: offset + i) }
                return
            }
            // Odometer over the output in C order, tracking the source element index.
            var index = [Int](repeating: 0, count: shape.count)
            var source = offset
            for i in 0..<count {
                out[i] = type.load(raw, base: base, index: source)
                var axis = shape.count - 1
                while axis >= 0 {
                    index[axis] += 1
                    // Wrapping arithmetic: the last step may run one stride past the view, unread.
                    source &+= stride[axis]
                    if index[axis] < shape[axis] { break }
                    source &-= stride[axis] &* shape[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }
    return StoredTensor(shape: shape, values: values)
}

func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var step = 1
    for axis in shape.indices.reversed() {
        strides[axis] = step
        step *= max(shape[axis], 1)
    }
    return strides
}
