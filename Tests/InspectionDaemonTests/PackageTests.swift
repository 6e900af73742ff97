import BuildInfo
import Foundation
import TestSupport
import XCTest

/// scripts/package.sh on the release binaries: the .deb's contents, unpacked into a scratch root
/// with `dpkg -x`, are checked as an operator would use them.
final class PackageTests: XCTestCase {
    /// Every file the package must carry (mode checks below), relative to the root.
    static let expectedFiles = [
        "usr/bin/rstpm", "usr/bin/rstpmd",
        "usr/lib/systemd/system/rstpmd.service", "usr/lib/systemd/system/rstpm-review.service", "usr/lib/sysusers.d/rstpmd.conf", "usr/lib/tmpfiles.d/rstpmd.conf",
        "etc/rstpmd/rstpmd.yaml",
        "usr/share/doc/rstpm/README.md", "usr/share/doc/rstpm/rstpmd.md", "usr/share/doc/rstpm/verdict.md", "usr/share/doc/rstpm/review.md",
        "usr/share/doc/rstpm/README.Debian",
        "usr/share/man/man1/rstpm.1.gz", "usr/share/man/man8/rstpmd.8.gz", "usr/share/man/man5/rstpmd.yaml.5.gz",
        "usr/share/bash-completion/completions/rstpm", "usr/share/bash-completion/completions/rstpmd",
        "usr/share/zsh/vendor-completions/_rstpm", "usr/share/zsh/vendor-completions/_rstpmd",
        "usr/share/fish/vendor_completions.d/rstpm.fish", "usr/share/fish/vendor_completions.d/rstpmd.fish",
    ]

    private var scratch: URL!

    override func setUpWithError() throws {
        for tool in ["/usr/bin/dpkg-deb", "/usr/bin/dpkg-shlibdeps", "/usr/bin/systemd-analyze", "/usr/bin/man", "/usr/bin/jq"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw XCTSkip("\(tool) is not installed (scripts/install-deps.sh)")
        }
        guard Tools.builtExecutable("rstpm") != nil, Tools.builtExecutable("rstpmd") != nil else {
            throw XCTSkip("rstpm and rstpmd are not built: swift build -c release")
        }
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-package-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
    }

    /// Runs a shell command line; returns status and output.
    private func shell(_ command: String, _ arguments: [String] = []) throws -> (status: Int32, output: String) {
        try Tools.run(URL(fileURLWithPath: "/bin/bash"), ["-c", command, "bash"] + arguments)
    }

    func testDebInstallsIntoAScratchRootWithWorkingUnitsManualsAndCompletions() throws {
        let binaries = Tools.builtExecutable("rstpm")!.deletingLastPathComponent().path
        let script = TestPaths.repositoryRoot.appendingPathComponent("scripts/package.sh").path
        let built = try shell("RSTPM_BINARIES=\"$1\" \"$2\" \"$3\"", [binaries, script, scratch.appendingPathComponent("out").path])
        XCTAssertEqual(built.status, 0, built.output)
        let deb = built.output.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(URL(fileURLWithPath: deb).lastPathComponent, "rstpm_\(RSTPMBuild.version)_amd64.deb")

        // Control: the version, the libraries (and no Swift toolchain), the conffile, the scripts.
        let control = try shell("dpkg-deb -f \"$1\"", [deb])
        XCTAssertEqual(control.status, 0, control.output)
        XCTAssertTrue(control.output.contains("Version: \(RSTPMBuild.version)\n"), control.output)
        let depends = control.output.split(separator: "\n").first { $0.hasPrefix("Depends:") }.map(String.init) ?? ""
        for library in ["libopenblas0", "libpng16-16", "libjpeg62-turbo", "libsystemd0", "libdeflate0", "zlib1g", "libc6", "systemd"] {
            XCTAssertTrue(depends.contains(library), "\(library) missing from \(depends)")
        }
        XCTAssertFalse(depends.lowercased().contains("swift"), depends)
        let info = scratch.appendingPathComponent("DEBIAN")
        XCTAssertEqual(try shell("dpkg-deb -e \"$1\" \"$2\"", [deb, info.path]).status, 0)
        XCTAssertEqual(try String(contentsOf: info.appendingPathComponent("conffiles"), encoding: .utf8), "/etc/rstpmd/rstpmd.yaml\n")
        let postinst = try String(contentsOf: info.appendingPathComponent("postinst"), encoding: .utf8)
        for starting in ["systemctl enable", "systemctl start", "systemctl restart", "--now"] {
            XCTAssertFalse(postinst.contains(starting), "postinst must not start or enable anything: \(starting)")
        }

        // Files, unpacked.
        let root = scratch.appendingPathComponent("root")
        let unpacked = try shell("dpkg -x \"$1\" \"$2\"", [deb, root.path])
        XCTAssertEqual(unpacked.status, 0, unpacked.output)
        for file in Self.expectedFiles {
            XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent(file).path), "\(file) missing from the package")
        }
        for binary in ["rstpm", "rstpmd"] {
            let path = root.appendingPathComponent("usr/bin/\(binary)")
            XCTAssertTrue(FileManager.default.isExecutableFile(atPath: path.path))
            // No Swift runtime from the toolchain: the package must run where /opt/swift is not.
            let needed = try shell("readelf -d \"$1\" | grep NEEDED", [path.path])
            XCTAssertFalse(needed.output.contains("libswift") || needed.output.contains("libFoundation") || needed.output.contains("libdispatch"), needed.output)
            let version = try Tools.run(path, ["--version"], environment: [:])
            XCTAssertEqual(version.status, 0, version.output)
            XCTAssertEqual(version.output, RSTPMBuild.description + "\n")
        }

        // A real inspection by the packaged rstpm with the toolchain out of sight (/opt/swift
        // under an empty tmpfs, in a mount namespace of its own).
        if getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"), let model = try? BinaryHarness.tinyModel() {
            let outbox = scratch.appendingPathComponent("outbox")
            let image = BinaryHarness.bottle.appendingPathComponent("test/good/000.png")
            let inspected = try shell("unshare -m sh -c 'mount -t tmpfs none /opt/swift && exec env -i PATH=/usr/bin:/bin \"$@\"' sh \"$@\"", [
                root.appendingPathComponent("usr/bin/rstpm").path, "infer", "--model", model.path, "--out", outbox.path,
                "--weights-dir", TestPaths.weightsDirectory.path, image.path,
            ])
            XCTAssertEqual(inspected.status, 0, inspected.output)
            let verdict = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: outbox.appendingPathComponent("000.png.json"))) as? [String: Any])
            XCTAssertEqual(verdict["rstpm_version"] as? String, RSTPMBuild.description)
        }

        // Each unit's Documentation= names files the package carries.
        for unitName in ["rstpmd.service", "rstpm-review.service"] {
            let unitText = try String(contentsOf: root.appendingPathComponent("usr/lib/systemd/system/\(unitName)"), encoding: .utf8)
            let documentation = unitText.split(separator: "\n").filter { $0.hasPrefix("Documentation=") }
                .flatMap { $0.dropFirst("Documentation=".count).split(separator: " ") }
            XCTAssertFalse(documentation.isEmpty, unitName)
            for entry in documentation where entry.hasPrefix("file:") {
                XCTAssertTrue(FileManager.default.fileExists(atPath: root.path + entry.dropFirst("file:".count)), "\(unitName): Documentation=\(entry) is not in the package")
            }
        }
        let unit = try String(contentsOf: root.appendingPathComponent("usr/lib/systemd/system/rstpmd.service"), encoding: .utf8)
        // The packaged unit, its ExecStart= on the unpacked rstpmd (as scripts/check-units.sh does:
        // verify resolves the command, and the scratch root has no systemd of its own).
        let unitCopy = scratch.appendingPathComponent("rstpmd.service")
        try unit.replacingOccurrences(of: "/usr/bin/rstpmd", with: root.path + "/usr/bin/rstpmd").write(to: unitCopy, atomically: true, encoding: .utf8)
        let verify = try shell("systemd-analyze verify --man=no \"$1\" 2>&1", [unitCopy.path])
        XCTAssertEqual(verify.status, 0, verify.output)
        XCTAssertEqual(verify.output, "", "systemd-analyze verify must print nothing")

        // postinst, run on the scratch root: the user from sysusers.d, then the folders it owns.
        if getuid() == 0 {
            let postinst = try shell("DPKG_ROOT=\"$1\" sh \"$2\" configure 2>&1", [root.path, info.appendingPathComponent("postinst").path])
            XCTAssertEqual(postinst.status, 0, postinst.output)
            let passwd = try String(contentsOf: root.appendingPathComponent("etc/passwd"), encoding: .utf8)
            let entry = passwd.split(separator: "\n").first { $0.hasPrefix("rstpmd:") }.map { $0.split(separator: ":", omittingEmptySubsequences: false) }
            XCTAssertNotNil(entry, passwd)
            let uid = entry.flatMap { Int($0[2]) } ?? -1
            for (folder, mode, owner) in [("var/lib/rstpmd", 0o750, uid), ("var/lib/rstpmd/weights", 0o750, 0), ("var/lib/rstpmd/models", 0o750, 0), ("srv/rstpmd", 0o750, uid)] {
                let attributes = try FileManager.default.attributesOfItem(atPath: root.appendingPathComponent(folder).path)
                XCTAssertEqual((attributes[.posixPermissions] as? Int).map { String($0, radix: 8) }, String(mode, radix: 8), folder)
                XCTAssertEqual(attributes[.ownerAccountID] as? Int, owner, folder)
            }
        }

        // Manual pages render without warnings and name their subject.
        for (page, name) in [("man1/rstpm.1.gz", "rstpm"), ("man8/rstpmd.8.gz", "rstpmd"), ("man5/rstpmd.yaml.5.gz", "rstpmd.yaml")] {
            let rendered = try shell("MANWIDTH=100 man --warnings -l \"$1\" 2>&1 >/dev/null | head -5; MANWIDTH=100 man -l \"$1\" 2>/dev/null", [root.appendingPathComponent("usr/share/man/\(page)").path])
            XCTAssertEqual(rendered.status, 0, rendered.output)
            XCTAssertTrue(rendered.output.hasPrefix(name.uppercased() + "("), "\(page) rendered with warnings or without its title:\n\(rendered.output.prefix(600))")
            XCTAssertTrue(rendered.output.contains("NAME\n       \(name) - "), "\(page):\n\(rendered.output.prefix(600))")
        }
        let manual = try shell("MANWIDTH=200 man -l \"$1\"", [root.appendingPathComponent("usr/share/man/man1/rstpm.1.gz").path]).output
        for command in ["rstpm setup-line", "rstpm weights fetch", "rstpm train", "--model"] {
            XCTAssertTrue(manual.contains(command), "rstpm(1) lacks \(command)")
        }

        // Completions load in their shells.
        for binary in ["rstpm", "rstpmd"] {
            let bash = try shell("source \"$1\" && complete -p \"$2\"", [root.appendingPathComponent("usr/share/bash-completion/completions/\(binary)").path, binary])
            XCTAssertEqual(bash.status, 0, bash.output)
            XCTAssertTrue(bash.output.hasPrefix("complete ") && bash.output.hasSuffix(" \(binary)\n"), bash.output)
            if FileManager.default.isExecutableFile(atPath: "/usr/bin/zsh") {
                let zsh = try shell("zsh -n \"$1\" 2>&1", [root.appendingPathComponent("usr/share/zsh/vendor-completions/_\(binary)").path])
                XCTAssertEqual(zsh.status, 0, zsh.output)
            }
            if FileManager.default.isExecutableFile(atPath: "/usr/bin/fish") {
                let fish = try shell("fish --no-execute \"$1\" 2>&1", [root.appendingPathComponent("usr/share/fish/vendor_completions.d/\(binary).fish").path])
                XCTAssertEqual(fish.status, 0, fish.output)
            }
        }
        let bashCompletion = try shell("source \"$1\" && COMP_WORDS=(rstpm setup-); COMP_CWORD=1; COMP_LINE='rstpm setup-'; COMP_POINT=12; $(complete -p rstpm | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p') rstpm setup- rstpm; printf '%s\\n' \"${COMPREPLY[@]}\"",
                                       [root.appendingPathComponent("usr/share/bash-completion/completions/rstpm").path])
        XCTAssertTrue(bashCompletion.output.contains("setup-line"), "bash completion of `rstpm setup-`: \(bashCompletion.output)")
    }
}
