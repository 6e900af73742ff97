import Foundation

/// rstpmd.yaml cases: a tired operator's mistakes and a hostile file's tricks, beside the valid
/// forms that must keep working.
extension AdversarialCorpus {
    /// One line on the case's folders; `more` is appended to the line.
    static func lineYAML(_ name: String = "line-a", suffix: String = "", more: String = "") -> String {
        """
          - name: \(name)
            inbox: @ROOT@/inbox\(suffix)
            work: @ROOT@/work\(suffix)
            outbox: @ROOT@/outbox\(suffix)
            archive: @ROOT@/archive\(suffix)
            quarantine: @ROOT@/quarantine\(suffix)
            model: @MODEL@
            poll_interval_seconds: 0.1
            settle_interval_seconds: 0
        \(more)
        """
    }

    static let validYAML = "instance: corpus\nmetrics_file: @ROOT@/metrics/rstpmd.prom\nlines:\n" + lineYAML()

    static func configurationCases() -> [ConfigurationCase] {
        var cases: [ConfigurationCase] = []
        func add(_ name: String, _ yaml: String, _ expectation: Expectation, entries: [(String, Entry)] = []) {
            cases.append(ConfigurationCase(name: name, yaml: Array(yaml.utf8), entries: entries, expectation: expectation))
        }
        /// The valid file with one line replaced (`key: old` by `key: new`).
        func changed(_ name: String, _ old: String, _ new: String, refusing key: String, entries: [(String, Entry)] = []) {
            precondition(validYAML.contains(old), old)
            add(name, validYAML.replacingOccurrences(of: old, with: new), .refused(key), entries: entries)
        }
        /// The valid file with more keys in its line.
        func extra(_ name: String, _ keys: String, refusing key: String) {
            add(name, "instance: corpus\nlines:\n" + lineYAML(more: keys), .refused(key))
        }

        add("valid", validYAML, .accepted)
        add("valid-two-lines", validYAML + "\n" + lineYAML("line-b", suffix: "-b"), .accepted)
        add("valid-crlf", validYAML.replacingOccurrences(of: "\n", with: "\r\n"), .accepted)
        add("valid-byte-order-mark", "\u{feff}" + validYAML, .accepted)
        add("valid-anchored-settings", "instance: corpus\nlines:\n" + lineYAML(more: "    batch_size: &batch 2") + "\n" + lineYAML("line-b", suffix: "-b", more: "    batch_size: *batch"), .accepted)
        add("valid-delete-policy", validYAML.replacingOccurrences(of: "    archive: @ROOT@/archive\n", with: "    processed_inputs: delete\n"), .accepted)
        add("valid-quoted", validYAML.replacingOccurrences(of: "inbox: @ROOT@/inbox", with: "inbox: \"@ROOT@/inbox\"").replacingOccurrences(of: "name: line-a", with: "name: 'line-a'"), .accepted)
        add("valid-5-mb-comment", "# " + String(repeating: "x", count: 5 << 20) + "\n" + validYAML, .accepted)

        // The document.
        add("empty", "", .refused("lines"))
        add("comment-only", "# nothing here\n", .refused("lines"))
        add("lines-empty", "instance: corpus\nlines: []\n", .refused("lines"))
        add("scalar-document", "hello\n", .refused("(document)"))
        add("sequence-document", "- a\n- b\n", .refused("(document)"))
        add("syntax-error", validYAML + "\n  - [unclosed\n", .refused("(syntax)"))
        add("tab-indented", validYAML.replacingOccurrences(of: "    inbox:", with: "\tinbox:"), .refused("(syntax)"))
        add("nested-100000", "lines: " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n", .refused("(syntax)"))
        add("nul-byte", validYAML.replacingOccurrences(of: "instance: corpus", with: "instance: cor\0pus"), .refused("rstpmd.yaml"))
        cases.append(ConfigurationCase(name: "latin-1", yaml: Array("# caf".utf8) + [0xe9] + Array(("\n" + validYAML).utf8), expectation: .refused("cannot read")))
        add("billion-laughs", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            + (1..<10).map { "a\($0): &a\($0) [" + [String](repeating: "*a\($0 - 1)", count: 9).joined(separator: ", ") + "]\n" }.joined() + "lines: *a9\n", .refused("lines"))
        add("alias-of-a-line", "instance: corpus\nlines:\n" + lineYAML().replacingOccurrences(of: "  - name:", with: "  - &line\n    name:") + "\n  - *line\n", .refused("lines[1]"))
        add("merge-key", "instance: corpus\nlines:\n" + lineYAML().replacingOccurrences(of: "  - name:", with: "  - &line\n    name:") + "\n  - <<: *line\n    name: line-b\n", .refused("lines[1]"))
        add("tag-python", validYAML.replacingOccurrences(of: "instance: corpus", with: "instance: !!python/object/apply:os.system [\"touch pwned-by-yaml\"]"), .refused("instance"))
        add("tag-binary", validYAML.replacingOccurrences(of: "inbox: @ROOT@/inbox", with: "inbox: !!binary aGVsbG8="), .refused("inbox"))
        add("duplicate-key", validYAML.replacingOccurrences(of: "    inbox: @ROOT@/inbox\n", with: "    inbox: @ROOT@/inbox\n    inbox: @ROOT@/inbox-b\n"), .refused("inbox"))

        // Keys and values.
        changed("unknown-top-key", "instance: corpus", "instance: corpus\ncolour: blue", refusing: "colour")
        changed("misspelled-key", "inbox:", "inobx:", refusing: "inobx")
        changed("inbox-number", "inbox: @ROOT@/inbox", "inbox: 5", refusing: "lines[0].inbox")
        changed("inbox-list", "inbox: @ROOT@/inbox", "inbox: [@ROOT@/inbox, @ROOT@/inbox-b]", refusing: "lines[0].inbox")
        changed("inbox-relative", "inbox: @ROOT@/inbox", "inbox: inbox", refusing: "lines[0].inbox")
        changed("inbox-tilde", "inbox: @ROOT@/inbox", "inbox: ~/inbox", refusing: "lines[0].inbox")
        changed("inbox-with-nul", "inbox: @ROOT@/inbox", "inbox: \"@ROOT@/in\\0box\"", refusing: "lines[0].inbox")
        changed("inbox-missing-folder", "inbox: @ROOT@/inbox", "inbox: @ROOT@/no-such-folder", refusing: "does not exist")
        changed("inbox-a-file", "inbox: @ROOT@/inbox", "inbox: @ROOT@/a-file", refusing: "not a directory", entries: [("a-file", .file([]))])
        changed("inbox-dev-null", "inbox: @ROOT@/inbox", "inbox: /dev/null", refusing: "not a directory")
        changed("lines-a-mapping", "lines:\n", "lines: {a: 1}\nx:\n", refusing: "lines")
        changed("model-missing", "model: @MODEL@", "model: @ROOT@/no-model", refusing: "lines[0].model")
        changed("model-a-file", "model: @MODEL@", "model: @MODEL@/manifest.json", refusing: "lines[0].model")
        for (key, values) in [
            ("batch_size", ["four", "0", "-1", "1e9", "4.5"]), ("threshold", [".nan", ".inf", "-.inf", "\"0.5\"", "1e39", "-1"]),
            ("heatmap_max_side", ["0", "-1", "huge", "1e9"]), ("processed_inputs", ["shred"]), ("max_input_bytes", ["0", "4611686018427387904"]),
        ] {
            for value in values { extra("\(key)=\(value.filter { $0 != "\"" })", "    \(key): \(value)", refusing: key) }
        }
        for (key, old, values) in [("poll_interval_seconds", "0.1", [".nan", ".inf", "-1", "0"]), ("settle_interval_seconds", "0", [".nan", "-.inf", "-1"])] {
            for value in values { changed("\(key)=\(value)", "\(key): \(old)\n", "\(key): \(value)\n", refusing: key) }
        }
        for (name, value) in [("dot-dot", "../escape"), ("empty", "\"\""), ("hidden", ".hidden"), ("slash", "a/b")] {
            changed("instance-\(name)", "instance: corpus", "instance: \(value)", refusing: "instance")
        }
        for (name, value) in [("slash", "a/b"), ("empty", "\"\""), ("accented", "línea"), ("newline", "\"a\\nb\"")] {
            changed("line-name-\(name)", "name: line-a", "name: \(value)", refusing: "lines[0].name")
        }
        changed("drain-0", "instance: corpus", "instance: corpus\ndrain_timeout_seconds: 0", refusing: "drain_timeout_seconds")
        changed("drain-nan", "instance: corpus", "instance: corpus\ndrain_timeout_seconds: .nan", refusing: "drain_timeout_seconds")

        // Folders that are one another.
        changed("archive-links-to-inbox", "archive: @ROOT@/archive", "archive: @ROOT@/archive-link", refusing: "same directory", entries: [("archive-link", .symbolicLink("@ROOT@/inbox"))])
        changed("outbox-links-to-inbox", "outbox: @ROOT@/outbox", "outbox: @ROOT@/outbox-link", refusing: "same directory", entries: [("outbox-link", .symbolicLink("@ROOT@/inbox"))])
        changed("outbox-is-quarantine", "outbox: @ROOT@/outbox", "outbox: @ROOT@/quarantine", refusing: "lines[0]")
        changed("work-is-inbox", "work: @ROOT@/work", "work: @ROOT@/inbox", refusing: "inbox")
        changed("archive-inside-inbox", "archive: @ROOT@/archive", "archive: @ROOT@/inbox/done", refusing: "inside", entries: [("inbox/done", .directory)])
        add("inbox-through-dot-dot", validYAML.replacingOccurrences(of: "inbox: @ROOT@/inbox", with: "inbox: @ROOT@/outbox/../inbox"), .accepted)
        add("lines-share-an-outbox", validYAML + "\n" + lineYAML("line-b", suffix: "-b").replacingOccurrences(of: "outbox-b", with: "outbox"), .refused("lines[1].outbox"))
        add("inbox-is-other-outbox", validYAML + "\n" + lineYAML("line-b", suffix: "-b").replacingOccurrences(of: "inbox-b", with: "outbox"), .refused("lines[1].inbox"))
        add("lines-share-an-inbox", validYAML + "\n" + lineYAML("line-b", suffix: "-b").replacingOccurrences(of: "inbox-b", with: "inbox"), .refused("lines[1].inbox"))
        add("same-line-name", validYAML + "\n" + lineYAML("line-a", suffix: "-b"), .refused("lines[1].name"))
        changed("metrics-in-inbox", "metrics_file: @ROOT@/metrics/rstpmd.prom", "metrics_file: @ROOT@/inbox/rstpmd.prom", refusing: "metrics_file")
        changed("metrics-folder-missing", "metrics_file: @ROOT@/metrics/rstpmd.prom", "metrics_file: @ROOT@/no-such/rstpmd.prom", refusing: "metrics_file")

        // Continuous learning.
        let learning = "    learning:\n      accepted: @ROOT@/accepted\n      store: @ROOT@/store\n      trainer: [/usr/bin/rstpm, train, --out, \"{out}\"]\n"
        extra("learning-without-a-model-store", learning, refusing: "model store")
        extra("learning-relative-trainer", learning.replacingOccurrences(of: "/usr/bin/rstpm", with: "rstpm"), refusing: "trainer")
        extra("learning-window-25h", learning + "      window: \"25:00-99:99\"\n", refusing: "window")
        extra("learning-min-new-images-0", learning + "      min_new_images: 0\n", refusing: "min_new_images")

        // Teachers that are not the published files, under their names.
        for (name, teacher) in [
            ("deep-pickle", Entry.file(Pickle.start + Pickle.int(1) + [UInt8](repeating: 0x85, count: 50_000) + [0x2e])),
            ("empty", .file([])), ("missing", .symbolicLink("@OUTSIDE@/missing.pth")), ("folder", .directory),
            ("fifo", .fifo), ("dev-zero", .symbolicLink("/dev/zero")),
        ] {
            cases.append(ConfigurationCase(name: "teacher-\(name)", yaml: Array(validYAML.utf8), lite0Teacher: teacher, expectation: .refused(teacherFiles[0])))
        }
        return cases
    }
}
