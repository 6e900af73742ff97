// Writes issue #13's adversarial corpus (TestSupport's AdversarialCorpus, the cases that
// AdversarialCorpusTests runs) to a folder for manual runs; scripts/adversarial-corpus.sh calls it.
import Foundation
import TestSupport

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count == 3 else {
    FileHandle.standardError.write(Data("usage: adversarial-corpus OUT MODEL_BUNDLE WEIGHTS_DIR\n".utf8))
    exit(2)
}
do {
    let corpus = try AdversarialCorpus()
    let folder = URL(fileURLWithPath: arguments[0])
    try corpus.write(to: folder, bundle: URL(fileURLWithPath: arguments[1]), weights: URL(fileURLWithPath: arguments[2]))
    print("\(corpus.count) cases in \(folder.path): \(corpus.inbox.count) inbox entries (inbox/<batch>), \(corpus.checkpoints.count) checkpoints,"
          + " \(corpus.wheels.count) wheels, \(corpus.bundles.count) bundles, \(corpus.configurations.count) configurations; cases.txt lists each with its expected outcome")
} catch {
    FileHandle.standardError.write(Data("adversarial-corpus: \(error)\n".utf8))
    exit(1)
}
