import ArgumentParser
import Foundation

/// A mistyped command (`rstpm trian`, `rstpm model lsit`) names the closest one instead of
/// ArgumentParser's "Unexpected argument" and the whole usage. Exit status 64, as any usage error.
enum CommandSuggestion {
    /// The unknown command in `arguments` under `root` and what to say about it, or nil when the
    /// command path is fine (or ends in an option, which ArgumentParser handles).
    static func problem(in arguments: [String], root: ParsableCommand.Type) -> String? {
        var command = root, path = [root._commandName]
        for argument in arguments {
            let subcommands = command.configuration.subcommands
            if subcommands.isEmpty || argument.hasPrefix("-") || argument == "help" { return nil }
            guard let next = subcommands.first(where: { $0._commandName == argument }) else {
                let names = subcommands.map { $0._commandName }
                let prefix = path.joined(separator: " ")
                var message = "\(prefix): unknown command '\(argument)'"
                if let closest = closest(to: argument, among: names) { message += "; did you mean '\(prefix) \(closest)'?" }
                return message + "\ncommands: \(names.joined(separator: ", ")) (see '\(prefix) --help')"
            }
            command = next
            path.append(argument)
        }
        return nil
    }

    /// The name nearest to `word` by edit distance (a swap of two neighbours counts once), if
    /// it is near enough to be a typo: at most 2 edits, and fewer than half the word.
    static func closest(to word: String, among names: [String]) -> String? {
        let scored = names.map { ($0, distance(word.lowercased(), $0)) }.min { ($0.1, $0.0) < ($1.1, $1.0) }
        guard let (name, edits) = scored, edits <= 2, edits * 2 < max(word.count, name.count) else { return nil }
        return name
    }

    /// Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
                }
            }
        }
        return table[a.count][b.count]
    }
}

extension RSTPMCommand {
    /// `main()`, after checking the command names.
    static func mainSuggestingCommands(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        if let problem = CommandSuggestion.problem(in: arguments, root: RSTPMCommand.self) {
            FileHandle.standardError.write(Data("Error: \(problem)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        main(arguments)
        Foundation.exit(0)
    }
}
