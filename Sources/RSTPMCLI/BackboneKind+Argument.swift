import ArgumentParser
import Backbones

extension BackboneKind: ExpressibleByArgument {}
