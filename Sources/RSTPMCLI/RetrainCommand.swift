import ArgumentParser
import ContinuousLearning
import Foundation
import OperatorErrors
import RSTPM

struct RetrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retrain",
        abstract: "Ask rstpmd to retrain a line now, whatever its window and the number of new images.",
        discussion: "Writes the request file into the line's training store; rstpmd starts the run at its next check (within seconds). `systemctl kill -s USR1 rstpmd` asks for every learning line at once.")

    @OptionGroup var selection: LineSelection

    func run() throws {
        let line = try selection.resolve()
        guard let learning = line.learning else {
            throw OperatorError(.invalidInput, path: selection.config, problem: "line \(selection.line) has no `learning:` block",
                             hint: "retraining is for lines that learn; add a learning: block (docs/rstpmd.md)")
        }
        try LearningLine.requestRetrain(trainingStore: learning.trainingStore)
        print("\(selection.line): retraining requested (\(learning.trainingStore.appending(LearningLine.requestFileName)))")
    }
}
