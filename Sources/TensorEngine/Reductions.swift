// Vectorised reductions. Swift keeps floating-point additions in source order, so a plain
// `sum += x[i]` loop is one serial dependency chain; these helpers keep 16 independent partial
// sums in two SIMD8 registers instead (the order of additions differs from a serial loop only
// by rounding).

@inline(__always)
func load8(_ pointer: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func store8(_ value: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: SIMD8<Float>.self)
}

/// sum_i a[i]
@inline(__always)
func vectorSum(_ a: UnsafePointer<Float>, count: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
    var i = 0
    while i + 16 <= count {
        s0 += load8(a + i)
        s1 += load8(a + i + 8)
        i += 16
    }
    var total = (s0 + s1).sum()
    while i < count { total += a[i]; i += 1 }
    return total
}

/// sum_i a[i] * b[i]
@inline(__always)
func vectorDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
    var i = 0
    while i + 16 <= count {
        s0 += load8(a + i) * load8(b + i)
        s1 += load8(a + i + 8) * load8(b + i + 8)
        i += 16
    }
    var total = (s0 + s1).sum()
    while i < count { total += a[i] * b[i]; i += 1 }
    return total
}

/// sum_i (a[i] - center)^2
@inline(__always)
func vectorSquaredDeviation(_ a: UnsafePointer<Float>, center: Float, count: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
    let c = SIMD8<Float>(repeating: center)
    var i = 0
    while i + 16 <= count {
        let d0 = load8(a + i) - c, d1 = load8(a + i + 8) - c
        s0 += d0 * d0
        s1 += d1 * d1
        i += 16
    }
    var total = (s0 + s1).sum()
    while i < count { let d = a[i] - center; total += d * d; i += 1 }
    return total
}


/// sum_i a[i] * (b[i] - center)
@inline(__always)
func vectorDotDeviation(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, center: Float, count: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
    let c = SIMD8<Float>(repeating: center)
    var i = 0
    while i + 16 <= count {
        s0 += load8(a + i) * (load8(b + i) - c)
        s1 += load8(a + i + 8) * (load8(b + i + 8) - c)
        i += 16
    }
    var total = (s0 + s1).sum()
    while i < count { total += a[i] * (b[i] - center); i += 1 }
    return total
}
