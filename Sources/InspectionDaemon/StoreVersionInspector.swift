import Foundation
import SystemPackage

/// A bundle from a model store: reports the store version (`v0003`) as `model.version`, so a
/// verdict names exactly the bundle that made it.
final class StoreVersionInspector<Inner: Inspector>: Inspector {
    let inner: Inner
    let modelIdentity: ModelIdentity

    var modelThreshold: Float? { inner.modelThreshold }

    init(_ inner: Inner, version: String) {
        self.inner = inner
        self.modelIdentity = ModelIdentity(identifier: inner.modelIdentity.identifier, version: version, precision: inner.modelIdentity.precision)
    }

    func prepare(_ inputs: [InspectionInput]) -> Inner.Prepared {
        inner.prepare(inputs)
    }

    func inspect(prepared: Inner.Prepared) -> [Result<InspectionOutcome, InspectionError>] {
        inner.inspect(prepared: prepared)
    }
}

/// A line's model bundle could not be loaded.
public struct ModelLoadError: Error, CustomStringConvertible {
    public var line: String
    public var bundle: FilePath
    public var underlying: String

    public var description: String {
        "line \(line): cannot load model bundle \(bundle): \(underlying)"
    }
}
