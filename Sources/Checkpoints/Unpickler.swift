// Over 400 lines: one opcode switch; split, its whitelist checks would be spread apart.
// A restricted unpickler: the protocol 2-5 opcodes that torch state_dicts use, and a whitelist of
// globals. It builds values, never runs code: REDUCE is interpreted for the few whitelisted
// callables (OrderedDict, the tensor rebuild functions) and refused for everything else, and
// GLOBAL itself already refuses any name off the list, so `posix.system` fails where it appears.

/// A value built by the unpickler. Lists and dicts are shared references, as in Python, so that
/// APPEND/SETITEM through a memo entry reach the same object.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer wider than 64 bits: little-endian two's complement bytes (the legacy magic number).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    case global(module: String, name: String)
    case storage(StorageReference)
    case tensor(TensorReference)

    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let module, let name): return "\(module).\(name)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

extension PickleValue {
    /// Containers nested inside this value, counting this one: 0 for a scalar. A list's or a
    /// dict's depth is what it held when last changed.
    var depth: Int {
        switch self {
        case .tuple(let tuple): return tuple.depth
        case .list(let list): return list.depth
        case .dict(let dict): return dict.depth
        default: return 0
        }
    }

    /// Releases `values` without recursion: the children of every container that nothing else
    /// holds are moved onto an explicit stack before the container goes, so a chain of 50,000
    /// nested tuples costs a loop, not 50,000 stack frames (which overflowed in deinit).
    static func release(_ values: inout [PickleValue]) {
        var pending: [PickleValue] = []
        swap(&pending, &values)
        while var value = pending.popLast() {
            // Each case drops `value`'s reference first, so the uniqueness test sees only ours.
            switch value {
            case .tuple(var tuple):
                value = .none
                if isKnownUniquelyReferenced(&tuple) { pending.append(contentsOf: tuple.takeItems()) }
            case .list(var list):
                value = .none
                if isKnownUniquelyReferenced(&list) { pending.append(contentsOf: list.takeItems()) }
            case .dict(var dict):
                value = .none
                if isKnownUniquelyReferenced(&dict) { pending.append(contentsOf: dict.takeValues()) }
            default: break
            }
        }
    }
}

/// A tuple. A class rather than an array in the enum so that its teardown can be iterative.
final class PickleTuple {
    private(set) var items: [PickleValue]
    let depth: Int

    init(_ items: [PickleValue]) {
        self.items = items
        depth = 1 + (items.lazy.map(\.depth).max() ?? 0)
    }

    fileprivate func takeItems() -> [PickleValue] {
        defer { items = [] }
        return items
    }

    deinit { PickleValue.release(&items) }
}

final class PickleList {
    private(set) var items: [PickleValue] = []
    private(set) var depth = 1

    func append(contentsOf values: [PickleValue]) {
        items.append(contentsOf: values)
        depth = max(depth, 1 + (values.lazy.map(\.depth).max() ?? 0))
    }

    func removeAll() { items.removeAll() }

    fileprivate func takeItems() -> [PickleValue] {
        defer { items = [] }
        return items
    }

    deinit { PickleValue.release(&items) }
}

final class PickleDict {
    private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var stringIndex: [String: Int] = [:]
    private(set) var depth = 1

    fileprivate func takeValues() -> [PickleValue] {
        defer { removeAll() }
        return entries.flatMap { [$0.key, $0.value] }
    }

    deinit {
        var values = takeValues()
        PickleValue.release(&values)
    }

    /// Python semantics: assigning an existing string key replaces its value in place.
    func set(_ key: PickleValue, _ value: PickleValue) {
        depth = max(depth, 1 + max(key.depth, value.depth))
        if case .string(let name) = key {
            if let position = stringIndex[name] {
                entries[position].value = value
                return
            }
            stringIndex[name] = entries.count
        }
        entries.append((key, value))
    }

    func removeAll() {
        entries.removeAll()
        stringIndex.removeAll()
    }

    subscript(name: String) -> PickleValue? {
        stringIndex[name].map { entries[$0].value }
    }
}

/// A storage named by a persistent id: its element type, key, and (legacy views) the element
/// range of the root storage it covers.
struct StorageReference {
    let type: ElementType
    let key: String
    let viewOffset: Int
    let viewCount: Int?
}

/// What `_rebuild_tensor_v2` was asked to build; materialized once the storages are located.
struct TensorReference {
    let storage: StorageReference
    let offset: Int
    let shape: [Int]
    let stride: [Int]
}

struct Unpickler {
    /// Turns the object of a BINPERSID into a value (torch: a storage tuple into a storage).
    typealias PersistentLoad = (PickleValue) throws -> PickleValue

    /// Globals a state_dict may name. Everything else is refused at GLOBAL.
    static func isAllowed(module: String, name: String) -> Bool {
        switch module {
        case "collections": return name == "OrderedDict"
        case "torch._utils": return ["_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"].contains(name)
        case "torch": return ElementType(torchStorage: name) != nil || ElementType(torchDType: name) != nil
        default: return false
        }
    }

    private var reader: ByteReader
    private let persistentLoad: PersistentLoad
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    /// Every list and dict made, so `releaseContainers` can break the cycles a pickle may build
    /// (a list appended to itself) that reference counting would otherwise leak.
    private var lists: [PickleList] = []
    private var dicts: [PickleDict] = []

    /// Bounds on what a hostile pickle can make us hold, far above any state_dict's needs.
    private static let stackLimit = 1 << 20
    private static let memoLimit = 1 << 22
    /// Containers inside containers: a state_dict nests a handful; the limit keeps a crafted
    /// chain (50,000 TUPLE1s in 50 KB) from reaching recursive code.
    static let depthLimit = 1000

    init(bytes: [UInt8], range: Range<Int>? = nil, context: String, persistentLoad: @escaping PersistentLoad) {
        reader = ByteReader(bytes, range: range, context: context)
        self.persistentLoad = persistentLoad
    }

    /// Offset just past the last STOP read: where the next pickle of a legacy stream starts.
    var position: Int { reader.position }

    /// Empties every list and dict this unpickler made; values it returned are unusable after.
    mutating func releaseContainers() {
        var values = stack + Array(memo.values)
        stack.removeAll()
        memo.removeAll()
        for list in lists { values.append(contentsOf: list.takeItems()) }
        for dict in dicts { values.append(contentsOf: dict.takeValues()) }
        lists.removeAll()
        dicts.removeAll()
        PickleValue.release(&values)
    }

    private mutating func newList() -> PickleList {
        let list = PickleList()
        lists.append(list)
        return list
    }

    private mutating func newDict() -> PickleDict {
        let dict = PickleDict()
        dicts.append(dict)
        return dict
    }

    /// Reads one pickle up to its STOP and returns its value.
    mutating func load() throws -> PickleValue {
        stack.removeAll(keepingCapacity: true)
        marks.removeAll()
        memo.removeAll()
        while true {
            let opcodeOffset = reader.position
            let opcode = try reader.uint8()
            if opcode == 0x2e {  // STOP
                guard marks.isEmpty, stack.count == 1 else { throw failure("STOP with \(stack.count) values and \(marks.count) marks open", at: opcodeOffset) }
                return stack[0]
            }
            try execute(opcode, at: opcodeOffset)
            guard stack.count <= Self.stackLimit, memo.count <= Self.memoLimit else { throw failure("pickle grows past its stack or memo limit", at: opcodeOffset) }
            // Every opcode that nests leaves the new container on top of the stack.
            if let top = stack.last, top.depth > Self.depthLimit {
                throw FormatFailure.malformed("\(reader.context): pickle nests containers deeper than \(Self.depthLimit) levels (offset \(opcodeOffset))",
                                              hint: "a state_dict nests a few levels; the file is not a torch checkpoint or was crafted")
            }
        }
    }

    private mutating func execute(_ opcode: UInt8, at offset: Int) throws {
        switch opcode {
        case 0x80:  // PROTO
            let version = try reader.uint8()
            guard version <= 5 else {
                throw FormatFailure(kind: .unsupported, reason: "\(reader.context): pickle protocol \(version) at offset \(offset)", hint: "this reader knows protocols 2 to 5")
            }
        case 0x95: try reader.skip(8)  // FRAME: a length hint only
        case 0x28: marks.append(stack.count)  // MARK
        case 0x7d: stack.append(.dict(newDict()))  // EMPTY_DICT
        case 0x5d: stack.append(.list(newList()))  // EMPTY_LIST
        case 0x29: stack.append(.tuple(PickleTuple([])))  // EMPTY_TUPLE
        case 0x74: stack.append(.tuple(PickleTuple(try popMark(at: offset))))  // TUPLE
        case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
            let count = Int(opcode - 0x84)
            stack.append(.tuple(PickleTuple(try pop(count, at: offset))))
        case 0x6c:  // LIST
            let list = newList()
            list.append(contentsOf: try popMark(at: offset))
            stack.append(.list(list))
        case 0x64:  // DICT
            let dict = newDict()
            try setItems(dict, try popMark(at: offset), at: offset)
            stack.append(.dict(dict))
        case 0x61:  // APPEND
            let value = try pop(at: offset)
            try list(on: offset).append(contentsOf: [value])
        case 0x65:  // APPENDS
            let values = try popMark(at: offset)
            try list(on: offset).append(contentsOf: values)
        case 0x73:  // SETITEM
            let pair = try pop(2, at: offset)
            try dict(on: offset).set(pair[0], pair[1])
        case 0x75:  // SETITEMS
            let values = try popMark(at: offset)
            try setItems(try dict(on: offset), values, at: offset)
        case 0x71: try put(Int(try reader.uint8()), at: offset)  // BINPUT
        case 0x72: try put(Int(try reader.uint32()), at: offset)  // LONG_BINPUT
        case 0x94: try put(memo.count, at: offset)  // MEMOIZE
        case 0x68: try get(Int(try reader.uint8()), at: offset)  // BINGET
        case 0x6a: try get(Int(try reader.uint32()), at: offset)  // LONG_BINGET
        case 0x4a: stack.append(.int(Int(Int32(bitPattern: try reader.uint32()))))  // BININT
        case 0x4b: stack.append(.int(Int(try reader.uint8())))  // BININT1
        case 0x4d: stack.append(.int(Int(try reader.uint16())))  // BININT2
        case 0x8a: stack.append(try long(byteCount: Int(try reader.uint8())))  // LONG1
        case 0x8b: stack.append(try long(byteCount: Int(try reader.uint32())))  // LONG4
        case 0x47:  // BINFLOAT: big-endian
            let range = try reader.take(8)
            let bits = reader.bytes[range].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            stack.append(.float(Double(bitPattern: bits)))
        case 0x4e: stack.append(.none)  // NONE
        case 0x88: stack.append(.bool(true))  // NEWTRUE
        case 0x89: stack.append(.bool(false))  // NEWFALSE
        case 0x58: stack.append(.string(try text(byteCount: Int(try reader.uint32()))))  // BINUNICODE
        case 0x8c: stack.append(.string(try text(byteCount: Int(try reader.uint8()))))  // SHORT_BINUNICODE
        case 0x8d: stack.append(.string(try text(byteCount: try reader.size64())))  // BINUNICODE8
        case 0x54: stack.append(.string(try text(byteCount: Int(try reader.uint32()))))  // BINSTRING (Python 2 str)
        case 0x55: stack.append(.string(try text(byteCount: Int(try reader.uint8()))))  // SHORT_BINSTRING
        case 0x42: stack.append(.bytes(Array(reader.bytes[try reader.take(Int(try reader.uint32()))])))  // BINBYTES
        case 0x43: stack.append(.bytes(Array(reader.bytes[try reader.take(Int(try reader.uint8()))])))  // SHORT_BINBYTES
        case 0x8e: stack.append(.bytes(Array(reader.bytes[try reader.take(try reader.size64())])))  // BINBYTES8
        case 0x30: _ = try pop(at: offset)  // POP
        case 0x31: _ = try popMark(at: offset)  // POP_MARK
        case 0x32:  // DUP
            guard let top = stack.last else { throw failure("DUP on an empty stack", at: offset) }
            stack.append(top)
        case 0x51: stack.append(try persistentLoad(try pop(at: offset)))  // BINPERSID
        case 0x63:  // GLOBAL: "module\nname\n"
            let module = try line(at: offset)
            let name = try line(at: offset)
            stack.append(try global(module: module, name: name, at: offset))
        case 0x93:  // STACK_GLOBAL
            let pair = try pop(2, at: offset)
            guard case .string(let module) = pair[0], case .string(let name) = pair[1] else { throw failure("STACK_GLOBAL without two strings", at: offset) }
            stack.append(try global(module: module, name: name, at: offset))
        case 0x52:  // REDUCE
            let arguments = try pop(at: offset)
            let callable = try pop(at: offset)
            guard case .tuple(let tuple) = arguments else { throw failure("REDUCE arguments are a \(arguments.typeName), not a tuple", at: offset) }
            stack.append(try call(callable, tuple.items, at: offset))
        case 0x81:  // NEWOBJ
            let arguments = try pop(at: offset)
            let cls = try pop(at: offset)
            guard case .global("collections", "OrderedDict") = cls, case .tuple(let tuple) = arguments, tuple.items.isEmpty else {
                throw FormatFailure(kind: .unsafe, reason: "\(reader.context): refuses to construct \(cls.typeName) (offset \(offset))",
                                    hint: "only OrderedDict may be constructed; the file may be malicious")
            }
            stack.append(.dict(newDict()))
        case 0x62:  // BUILD
            let state = try pop(at: offset)
            guard let target = stack.last else { throw failure("BUILD on an empty stack", at: offset) }
            switch target {
            case .dict, .tensor: break  // attribute state (OrderedDict._metadata, tensor flags) carries no values
            default: throw failure("BUILD on a \(target.typeName) with a \(state.typeName)", at: offset)
            }
        default:
            throw FormatFailure.malformed("\(reader.context): unknown or unsupported pickle opcode 0x\(String(opcode, radix: 16)) at offset \(offset)")
        }
    }

    private func failure(_ reason: String, at offset: Int) -> FormatFailure {
        FormatFailure.malformed("\(reader.context): \(reason) (offset \(offset))")
    }

    private mutating func pop(at offset: Int) throws -> PickleValue {
        guard stack.count > (marks.last ?? 0), let value = stack.popLast() else { throw failure("pop from an empty stack", at: offset) }
        return value
    }

    private mutating func pop(_ count: Int, at offset: Int) throws -> [PickleValue] {
        guard stack.count - (marks.last ?? 0) >= count else { throw failure("needs \(count) values on the stack", at: offset) }
        let values = Array(stack.suffix(count))
        stack.removeLast(count)
        return values
    }

    private mutating func popMark(at offset: Int) throws -> [PickleValue] {
        guard let mark = marks.popLast() else { throw failure("no MARK to pop to", at: offset) }
        let values = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return values
    }

    private func list(on offset: Int) throws -> PickleList {
        guard stack.count > (marks.last ?? 0), case .list(let list) = stack.last! else { throw failure("APPEND target is not a list", at: offset) }
        return list
    }

    private func dict(on offset: Int) throws -> PickleDict {
        guard stack.count > (marks.last ?? 0), case .dict(let dict) = stack.last! else { throw failure("SETITEM target is not a dict", at: offset) }
        return dict
    }

    private func setItems(_ dict: PickleDict, _ values: [PickleValue], at offset: Int) throws {
        guard values.count % 2 == 0 else { throw failure("odd number of values for a dict", at: offset) }
        for pair in stride(from: 0, to: values.count, by: 2) { dict.set(values[pair], values[pair + 1]) }
    }

    private mutating func put(_ key: Int, at offset: Int) throws {
        guard let top = stack.last else { throw failure("memo PUT on an empty stack", at: offset) }
        memo[key] = top
    }

    private mutating func get(_ key: Int, at offset: Int) throws {
        guard let value = memo[key] else { throw failure("memo GET of unknown key \(key)", at: offset) }
        stack.append(value)
    }

    private mutating func long(byteCount: Int) throws -> PickleValue {
        let range = try reader.take(byteCount)
        let bytes = Array(reader.bytes[range])
        guard bytes.count <= 8 else { return .bigInt(bytes) }
        var value: UInt64 = 0
        for byte in bytes.reversed() { value = value << 8 | UInt64(byte) }
        // Sign-extend from the top byte.
        if let top = bytes.last, top & 0x80 != 0, bytes.count < 8 { value |= ~UInt64(0) << (8 * UInt64(bytes.count)) }
        return .int(Int(Int64(bitPattern: value)))
    }

    private mutating func text(byteCount: Int) throws -> String {
        let range = try reader.take(byteCount)
        return String(decoding: reader.bytes[range], as: UTF8.self)
    }

    /// A GLOBAL argument: text up to a newline, at most 256 bytes.
    private mutating func line(at offset: Int) throws -> String {
        var bytes: [UInt8] = []
        while true {
            let byte = try reader.uint8()
            if byte == 0x0a { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
            guard bytes.count <= 256 else { throw failure("GLOBAL name longer than 256 bytes", at: offset) }
        }
    }

    private func global(module: String, name: String, at offset: Int) throws -> PickleValue {
        guard Self.isAllowed(module: module, name: name) else {
            throw FormatFailure(kind: .unsafe, reason: "\(reader.context): refuses global \(module).\(name) at offset \(offset)",
                                hint: "a state_dict never needs it; the file may be malicious, do not load it with torch.load either")
        }
        return .global(module: module, name: name)
    }

    private mutating func call(_ callable: PickleValue, _ arguments: [PickleValue], at offset: Int) throws -> PickleValue {
        switch callable {
        case .global("collections", "OrderedDict"):
            guard arguments.isEmpty else { throw failure("OrderedDict called with arguments", at: offset) }
            return .dict(newDict())
        case .global("torch._utils", "_rebuild_tensor_v2"):
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard arguments.count >= 4, case .storage(let storage) = arguments[0], case .int(let storageOffset) = arguments[1],
                  let shape = integers(arguments[2]), let stride = integers(arguments[3])
            else { throw failure("_rebuild_tensor_v2 called with unexpected arguments", at: offset) }
            return .tensor(TensorReference(storage: storage, offset: storageOffset, shape: shape, stride: stride))
        case .global("torch._utils", "_rebuild_parameter"), .global("torch._utils", "_rebuild_parameter_with_state"):
            // (data, requires_grad, backward_hooks[, state]): a Parameter is its data here.
            guard let data = arguments.first, case .tensor = data else { throw failure("_rebuild_parameter called without a tensor", at: offset) }
            return data
        default:
            throw FormatFailure(kind: .unsafe, reason: "\(reader.context): refuses to call \(callable.typeName) at offset \(offset)",
                                hint: "only OrderedDict and torch's tensor rebuild functions may be called; the file may be malicious")
        }
    }

    private func integers(_ value: PickleValue) -> [Int]? {
        guard case .tuple(let tuple) = value else { return nil }
        let items = tuple.items
        var result: [Int] = []
        for item in items {
            guard case .int(let number) = item else { return nil }
            result.append(number)
        }
        return result
    }
}
