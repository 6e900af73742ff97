// What a heatmap PNG says about itself: tEXt chunks for machines, and optionally the score and
// verdict drawn into its top-left corner for people (a 5x7 bitmap font, no font files).
import Foundation

extension Heatmap {
    /// The tEXt chunks of a heatmap PNG: `rstpm.model`, `rstpm.score`, `rstpm.threshold`,
    /// `rstpm.verdict` (`defect` or `ok`), the colour scale `rstpm.scale.min`/`rstpm.scale.max`
    /// and `rstpm.colormap`. `isDefect` is the caller's decision (score >= threshold).
    public static func textChunks(model: String, score: Float, threshold: Float, isDefect: Bool,
                                  scale: ClosedRange<Float>) -> [String: String] {
        [
            "rstpm.model": model,
            "rstpm.score": "\(score)",
            "rstpm.threshold": "\(threshold)",
            "rstpm.verdict": isDefect ? "defect" : "ok",
            "rstpm.scale.min": "\(scale.lowerBound)",
            "rstpm.scale.max": "\(scale.upperBound)",
            "rstpm.colormap": "turbo, opacity 0.2 at scale.min to 0.7 at scale.max, white outline at the threshold",
        ]
    }

    /// The corner label's text, e.g. `DEFECT 0.912 >= 0.455` or `OK 0.123 < 0.455`.
    public static func labelText(score: Float, threshold: Float, isDefect: Bool) -> String {
        func number(_ value: Float) -> String { String(format: value.magnitude < 1000 ? "%.3f" : "%.3e", Double(value)) }
        return isDefect ? "DEFECT \(number(score)) >= \(number(threshold))" : "OK \(number(score)) < \(number(threshold))"
    }

    /// Draws `labelText` on a filled box (dark red for a defect, dark green for ok) in the
    /// top-left corner of 8-bit RGB pixels (H, W, 3); glyphs are 7 dots high, a dot 1/200 of the
    /// image's smaller side (at least a pixel); clipped at the edges.
    public static func drawLabel(score: Float, threshold: Float, isDefect: Bool, into rgb8: inout [UInt8], width: Int, height: Int) {
        precondition(rgb8.count == width * height * 3, "\(rgb8.count) values are not \(width)x\(height)x3")
        let text = labelText(score: score, threshold: threshold, isDefect: isDefect)
        let dot = max(1, min(width, height) / 200)
        let pad = 2 * dot, advance = (BitmapFont.glyphWidth + 1) * dot
        let boxWidth = min(width, 2 * pad + text.count * advance - dot)
        let boxHeight = min(height, 2 * pad + BitmapFont.glyphHeight * dot)
        let box: (UInt8, UInt8, UInt8) = isDefect ? (150, 0, 0) : (0, 100, 0)
        for y in 0..<boxHeight {
            for x in 0..<boxWidth {
                let i = 3 * (y * width + x)
                (rgb8[i], rgb8[i + 1], rgb8[i + 2]) = box
            }
        }
        for (position, character) in text.enumerated() {
            let rows = BitmapFont.rows(of: character)
            for (row, bits) in rows.enumerated() {
                for column in 0..<BitmapFont.glyphWidth where bits & (0x10 >> column) != 0 {
                    let left = pad + position * advance + column * dot, top = pad + row * dot
                    guard left < boxWidth && top < boxHeight else { continue }
                    for y in top..<min(top + dot, boxHeight) {
                        for x in left..<min(left + dot, boxWidth) {
                            let i = 3 * (y * width + x)
                            (rgb8[i], rgb8[i + 1], rgb8[i + 2]) = (255, 255, 255)
                        }
                    }
                }
            }
        }
    }
}

/// A 5x7 bitmap font for the heatmap label: digits, the letters of OK and DEFECT, `e` (for
/// exponents) and `. - + < > =`; anything else is drawn as a blank.
enum BitmapFont {
    static let glyphWidth = 5, glyphHeight = 7

    /// Seven rows, the leftmost column in bit 4.
    static func rows(of character: Character) -> [UInt8] {
        glyphs[character] ?? [UInt8](repeating: 0, count: glyphHeight)
    }

    private static let glyphs: [Character: [UInt8]] = [
        "0": [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        "1": [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        "2": [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        "3": [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        "4": [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        "5": [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        "6": [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        "7": [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        "8": [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        "9": [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        ".": [0, 0, 0, 0, 0, 0b01100, 0b01100],
        "-": [0, 0, 0, 0b11111, 0, 0, 0],
        "+": [0, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0],
        "<": [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010],
        ">": [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000],
        "=": [0, 0, 0b11111, 0, 0b11111, 0, 0],
        "C": [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        "D": [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100],
        "E": [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        "F": [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        "K": [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        "O": [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        "T": [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        "e": [0, 0, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110],
    ]
}
