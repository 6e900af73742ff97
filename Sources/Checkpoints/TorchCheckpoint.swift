import Foundation

/// Reads the tensors of a PyTorch checkpoint written by `torch.save`, without running any of
/// its code.
///
/// Both layouts are understood: the zip archive (torch >= 1.6; `<folder>/data.pkl` plus
/// `<folder>/data/<key>` per storage) and the legacy stream (magic, protocol and sys_info
/// pickles, the main pickle, the list of storage keys, then each storage as a u64 element count
/// and raw little-endian data). Half, bfloat16, double and integer tensors become Float32;
/// strided views are copied out contiguous. A checkpoint whose top level is not the tensor
/// dictionary but holds it under `state_dict`, `model`, `model_state_dict` or `net` is accepted;
/// `StateDict.sourceKey` says which.
public enum TorchCheckpoint {
    public static func load(contentsOf url: URL) throws -> StateDict {
        try load(bytes: readFileBytes(url), path: url.path)
    }

    /// Parses checkpoint bytes already in memory; `path` names them in errors.
    public static func load(bytes: [UInt8], path: String) throws -> StateDict {
        try withPath(path) {
            if ZipArchive.looksLikeZip(bytes) { return try loadZip(bytes) }
            if bytes.first == 0x80 { return try loadLegacy(bytes) }
            throw FormatFailure.malformed("bad magic: starts with neither a zip header nor a pickle",
                                          hint: "expected a file written by torch.save (.pth / .pt)")
        }
    }

    static let containerKeys = ["state_dict", "model", "model_state_dict", "net"]

    // MARK: - Zip layout

    private static func loadZip(_ bytes: [UInt8]) throws -> StateDict {
        let archive = try ZipArchive(bytes)
        // The folder name is whatever the file was called when saved; find the one data.pkl.
        let pickles = archive.entries.filter { $0.name.hasSuffix("/data.pkl") && $0.name.dropLast("/data.pkl".count).contains("/") == false }
        guard pickles.count == 1 else {
            throw FormatFailure.malformed("zip holds \(pickles.count) <folder>/data.pkl entries, expected 1", hint: "not a torch.save archive")
        }
        let pickle = pickles[0]
        let folder = String(pickle.name.dropLast("data.pkl".count))
        if let order = archive.entry(named: folder + "byteorder") {
            let value = String(decoding: bytes[try archive.verifiedData(of: order)], as: UTF8.self)
            guard value == "little" else {
                throw FormatFailure(kind: .unsupported, reason: "storages are \(value)-endian", hint: "re-save the checkpoint on a little-endian machine")
            }
        }
        var storages: [String: ElementType] = [:]
        var unpickler = Unpickler(bytes: bytes, range: try archive.verifiedData(of: pickle), context: pickle.name) { id in
            let reference = try storageReference(id)
            storages[reference.key] = reference.type
            return .storage(reference)
        }
        defer { unpickler.releaseContainers() }
        let root = try unpickler.load()
        var located: [String: Range<Int>] = [:]
        for key in storages.keys {
            guard let entry = archive.entry(named: folder + "data/" + key) else {
                throw FormatFailure.truncated("storage \(key) is referenced but \(folder)data/\(key) is missing from the zip")
            }
            located[key] = try archive.verifiedData(of: entry)
        }
        return try buildStateDict(root, bytes: bytes, storages: located)
    }

    // MARK: - Legacy layout

    /// 0x1950a86a20f9469cfc6c, torch's legacy magic number, as little-endian bytes.
    private static let legacyMagic: [UInt8] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]

    private static func loadLegacy(_ bytes: [UInt8]) throws -> StateDict {
        var storages: [String: ElementType] = [:]
        var keyOrder: [String] = []
        var unpickler = Unpickler(bytes: bytes, context: "legacy checkpoint pickle") { id in
            let reference = try storageReference(id)
            if storages.updateValue(reference.type, forKey: reference.key) == nil { keyOrder.append(reference.key) }
            return .storage(reference)
        }
        defer { unpickler.releaseContainers() }
        guard case .bigInt(let magic) = try unpickler.load(), magic == legacyMagic else {
            throw FormatFailure.malformed("bad magic number in the legacy header", hint: "expected a file written by torch.save (.pth / .pt)")
        }
        guard case .int(let protocolVersion) = try unpickler.load(), protocolVersion == 1001 else {
            throw FormatFailure(kind: .unsupported, reason: "legacy protocol version is not 1001", hint: "re-save the checkpoint with a current torch")
        }
        guard case .dict(let systemInfo) = try unpickler.load() else { throw FormatFailure.malformed("legacy sys_info is not a dict") }
        if case .bool(false) = systemInfo["little_endian"] {
            throw FormatFailure(kind: .unsupported, reason: "storages are big-endian", hint: "re-save the checkpoint on a little-endian machine")
        }
        let root = try unpickler.load()
        guard case .list(let keyList) = try unpickler.load() else { throw FormatFailure.malformed("legacy storage key list is not a list") }

        // Storages follow in the order of the key list: u64 element count, then the data.
        var reader = ByteReader(bytes, context: "legacy storage data")
        try reader.seek(to: unpickler.position)
        var located: [String: Range<Int>] = [:]
        for item in keyList.items {
            guard case .string(let key) = item else { throw FormatFailure.malformed("legacy storage key is a \(item.typeName), not a str") }
            guard let type = storages[key] else { throw FormatFailure.malformed("legacy storage \(key) is listed but no tensor uses it") }
            let count = try reader.size64()
            let (byteCount, overflow) = count.multipliedReportingOverflow(by: type.byteCount)
            guard !overflow else { throw FormatFailure.malformed("legacy storage \(key) claims \(count) elements") }
            located[key] = try reader.take(byteCount)
        }
        for key in keyOrder where located[key] == nil {
            throw FormatFailure.malformed("storage \(key) is used but missing from the legacy key list")
        }
        return try buildStateDict(root, bytes: bytes, storages: located)
    }

    // MARK: - Shared

    /// ('storage', torch.<Type>Storage, key, location, numel[, view_metadata]) into a reference;
    /// view_metadata, in old legacy files, is (view_key, offset, size) of the root storage.
    private static func storageReference(_ id: PickleValue) throws -> StorageReference {
        guard case .tuple(let tuple) = id, case let items = tuple.items, items.count == 5 || items.count == 6, case .string("storage") = items[0],
              case .global("torch", let typeName) = items[1], case .string(let key) = items[2]
        else { throw FormatFailure.malformed("persistent id is not a ('storage', type, key, location, size) tuple") }
        guard let type = ElementType(torchStorage: typeName) else {
            throw FormatFailure(kind: .unsupported, reason: "storage type torch.\(typeName) holds no numbers this reader converts", hint: "convert the tensors to float before saving")
        }
        if items.count == 6, case .tuple(let viewTuple) = items[5] {
            let view = viewTuple.items
            guard view.count == 3, case .int(let offset) = view[1], case .int(let count) = view[2], offset >= 0, count >= 0 else {
                throw FormatFailure.malformed("storage \(key) has a malformed view description")
            }
            return StorageReference(type: type, key: key, viewOffset: offset, viewCount: count)
        }
        return StorageReference(type: type, key: key, viewOffset: 0, viewCount: nil)
    }

    private static func buildStateDict(_ root: PickleValue, bytes: [UInt8], storages: [String: Range<Int>]) throws -> StateDict {
        let (dict, sourceKey) = try findTensorDictionary(root)
        var result = StateDict()
        result.sourceKey = sourceKey
        for (key, value) in dict.entries {
            guard case .string(let name) = key, case .tensor(let tensor) = value else { continue }
            guard var range = storages[tensor.storage.key] else { throw FormatFailure.malformed("tensor \(name) uses storage \(tensor.storage.key), which the file does not hold") }
            let type = tensor.storage.type
            if tensor.storage.viewOffset > 0 || tensor.storage.viewCount != nil {
                let count = range.count / type.byteCount
                let viewCount = tensor.storage.viewCount ?? (count - tensor.storage.viewOffset)
                guard tensor.storage.viewOffset <= count, viewCount >= 0, viewCount <= count - tensor.storage.viewOffset else {
                    throw FormatFailure.malformed("storage view of \(name) lies outside storage \(tensor.storage.key)")
                }
                let start = range.lowerBound + tensor.storage.viewOffset * type.byteCount
                range = start..<(start + viewCount * type.byteCount)
            }
            do {
                result[name] = try materialize(bytes: bytes, storage: range, type: type, offset: tensor.offset, shape: tensor.shape, stride: tensor.stride)
            } catch var failure as FormatFailure {
                failure.reason = "tensor \(name): " + failure.reason
                throw failure
            }
        }
        return result
    }

    /// The dictionary whose values are all tensors: the root itself, or one of `containerKeys`.
    private static func findTensorDictionary(_ root: PickleValue) throws -> (PickleDict, String?) {
        guard case .dict(let top) = root else {
            throw FormatFailure.malformed("the checkpoint holds a \(root.typeName), not a dictionary of tensors", hint: "save model.state_dict(), not the model")
        }
        if holdsOnlyTensors(top) { return (top, nil) }
        for key in containerKeys {
            if case .dict(let inner) = top[key], holdsOnlyTensors(inner) { return (inner, key) }
        }
        let keys = top.entries.compactMap { entry -> String? in
            if case .string(let name) = entry.key { return name }
            return nil
        }
        throw FormatFailure.malformed("no dictionary of tensors at the top level or under \(containerKeys); top-level keys: \(keys.prefix(20))",
                                      hint: "save model.state_dict() or {\"state_dict\": model.state_dict()}")
    }

    private static func holdsOnlyTensors(_ dict: PickleDict) -> Bool {
        dict.entries.allSatisfy { entry in
            guard case .string = entry.key, case .tensor = entry.value else { return false }
            return true
        }
    }
}
