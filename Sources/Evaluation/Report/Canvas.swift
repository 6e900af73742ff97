// A small raster canvas for the report's charts: filled rectangles, anti-aliased polylines
// (solid or dashed) and text in a built-in 5x7 bitmap font. Coordinates are in pixels, x to
// the right and y down, (0, 0) the top-left corner of the top-left pixel.
import Imaging

/// An 8-bit sRGB colour.
public struct ChartColor: Codable, Equatable, Sendable {
    public var red: UInt8
    public var green: UInt8
    public var blue: UInt8

    public init(red: UInt8, green: UInt8, blue: UInt8) {
        self.red = red
        self.green = green
        self.blue = blue
    }

    /// "#rrggbb", for the HTML around a chart.
    public var hex: String {
        "#" + [red, green, blue].map { value in
            let digits = String(value, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }

    public static let white = ChartColor(red: 255, green: 255, blue: 255)
    public static let black = ChartColor(red: 0, green: 0, blue: 0)
    public static let axis = ChartColor(red: 60, green: 60, blue: 60)
    public static let grid = ChartColor(red: 225, green: 225, blue: 225)
    public static let chance = ChartColor(red: 160, green: 160, blue: 160)
    // Colour-blind-safe (Okabe-Ito): one per anomaly map, plus good/defective for histograms.
    public static let blue = ChartColor(red: 0, green: 114, blue: 178)
    public static let orange = ChartColor(red: 230, green: 159, blue: 0)
    public static let vermillion = ChartColor(red: 213, green: 94, blue: 0)
    public static let green = ChartColor(red: 0, green: 158, blue: 115)
    public static let purple = ChartColor(red: 204, green: 121, blue: 167)

    var components: (Float, Float, Float) { (Float(red) / 255, Float(green) / 255, Float(blue) / 255) }
}

struct Canvas {
    let width: Int
    let height: Int
    /// (H, W, 3), values in 0...1.
    var pixels: [Float]

    init(width: Int, height: Int, background: ChartColor = .white) {
        precondition(width > 0 && height > 0, "Canvas needs a positive size, got \(width)x\(height)")
        self.width = width
        self.height = height
        let (r, g, b) = background.components
        pixels = [Float](repeating: 0, count: width * height * 3)
        for i in 0..<width * height {
            pixels[3 * i] = r; pixels[3 * i + 1] = g; pixels[3 * i + 2] = b
        }
    }

    var image: RGBImage { RGBImage(width: width, height: height, pixels: pixels) }

    @inline(__always)
    mutating func blend(x: Int, y: Int, color: ChartColor, alpha: Float) {
        guard x >= 0, y >= 0, x < width, y < height, alpha > 0 else { return }
        let (r, g, b) = color.components
        let i = 3 * (y * width + x)
        pixels[i] += alpha * (r - pixels[i])
        pixels[i + 1] += alpha * (g - pixels[i + 1])
        pixels[i + 2] += alpha * (b - pixels[i + 2])
    }

    /// Fills the pixels whose centres lie in [x0, x1) x [y0, y1).
    mutating func fillRect(x0: Double, y0: Double, x1: Double, y1: Double, color: ChartColor, alpha: Float = 1) {
        let left = max(Int((min(x0, x1) - 0.5).rounded(.up)), 0), right = min(Int((max(x0, x1) - 0.5).rounded(.up)), width)
        let top = max(Int((min(y0, y1) - 0.5).rounded(.up)), 0), bottom = min(Int((max(y0, y1) - 0.5).rounded(.up)), height)
        guard left < right, top < bottom else { return }
        for y in top..<bottom {
            for x in left..<right { blend(x: x, y: y, color: color, alpha: alpha) }
        }
    }

    /// An anti-aliased polyline of `lineWidth` pixels: each pixel's coverage is estimated from
    /// the distance of its centre to the nearest segment, and the whole line is blended once
    /// so joints between short segments do not darken. `dash` (on, off) lengths in pixels.
    mutating func strokePolyline(_ points: [(x: Double, y: Double)], color: ChartColor, lineWidth: Double,
                                 alpha: Float = 1, dash: (on: Double, off: Double)? = nil) {
        guard points.count >= 2 else { return }
        var segments: [(Double, Double, Double, Double)] = []
        if let dash {
            // Walk the path and keep the pieces that fall in the "on" part of the pattern.
            let period = dash.on + dash.off
            var travelled = 0.0
            for (a, b) in zip(points, points.dropFirst()) {
                let length = ((b.x - a.x) * (b.x - a.x) + (b.y - a.y) * (b.y - a.y)).squareRoot()
                guard length > 0 else { continue }
                var s = 0.0
                while s < length {
                    let phase = (travelled + s).truncatingRemainder(dividingBy: period)
                    let isOn = phase < dash.on
                    let step = min(length - s, isOn ? dash.on - phase : period - phase)
                    if isOn {
                        let t0 = s / length, t1 = (s + step) / length
                        segments.append((a.x + (b.x - a.x) * t0, a.y + (b.y - a.y) * t0, a.x + (b.x - a.x) * t1, a.y + (b.y - a.y) * t1))
                    }
                    s += step
                }
                travelled += length
            }
        } else {
            for (a, b) in zip(points, points.dropFirst()) { segments.append((a.x, a.y, b.x, b.y)) }
        }
        let half = lineWidth / 2
        var coverage = [Float](repeating: 0, count: width * height)
        var touchedLeft = width, touchedRight = -1, touchedTop = height, touchedBottom = -1
        for (ax, ay, bx, by) in segments {
            guard ax.isFinite, ay.isFinite, bx.isFinite, by.isFinite else { continue }
            let left = max(Int((min(ax, bx) - half - 1).rounded(.down)), 0)
            let right = min(Int((max(ax, bx) + half + 1).rounded(.up)), width - 1)
            let top = max(Int((min(ay, by) - half - 1).rounded(.down)), 0)
            let bottom = min(Int((max(ay, by) + half + 1).rounded(.up)), height - 1)
            guard left <= right, top <= bottom else { continue }
            touchedLeft = min(touchedLeft, left); touchedRight = max(touchedRight, right)
            touchedTop = min(touchedTop, top); touchedBottom = max(touchedBottom, bottom)
            let dx = bx - ax, dy = by - ay
            let lengthSquared = dx * dx + dy * dy
            for y in top...bottom {
                for x in left...right {
                    let px = Double(x) + 0.5, py = Double(y) + 0.5
                    let t = lengthSquared > 0 ? min(max(((px - ax) * dx + (py - ay) * dy) / lengthSquared, 0), 1) : 0
                    let ex = px - (ax + t * dx), ey = py - (ay + t * dy)
                    let distance = (ex * ex + ey * ey).squareRoot()
                    let c = Float(min(max(half + 0.5 - distance, 0), 1))
                    let i = y * width + x
                    if c > coverage[i] { coverage[i] = c }
                }
            }
        }
        guard touchedLeft <= touchedRight else { return }
        for y in touchedTop...touchedBottom {
            for x in touchedLeft...touchedRight {
                blend(x: x, y: y, color: color, alpha: alpha * coverage[y * width + x])
            }
        }
    }

    // MARK: Text

    static let glyphWidth = 5, glyphHeight = 7

    /// Width in pixels of `text` at `scale` (one column of spacing between glyphs).
    static func textWidth(_ text: String, scale: Int) -> Int {
        max(text.count * (glyphWidth + 1) - 1, 0) * scale
    }

    /// Draws `text` with its top-left corner at (x, y); lower case is drawn as upper case.
    mutating func text(_ text: String, x: Int, y: Int, scale: Int = 1, color: ChartColor = .axis) {
        var penX = x
        for character in text.uppercased() {
            let rows = BitmapFont.glyphs[character] ?? BitmapFont.glyphs["?"]!
            for (row, bits) in rows.enumerated() {
                for column in 0..<Self.glyphWidth where bits & (1 << (Self.glyphWidth - 1 - column)) != 0 {
                    fillRect(x0: Double(penX + column * scale), y0: Double(y + row * scale),
                             x1: Double(penX + (column + 1) * scale), y1: Double(y + (row + 1) * scale), color: color)
                }
            }
            penX += (Self.glyphWidth + 1) * scale
        }
    }

    /// `text` turned 90 degrees counter-clockwise (for a y-axis title), reading bottom to top
    /// with its bottom-left corner at (x, y).
    mutating func verticalText(_ text: String, x: Int, y: Int, scale: Int = 1, color: ChartColor = .axis) {
        var penY = y
        for character in text.uppercased() {
            let rows = BitmapFont.glyphs[character] ?? BitmapFont.glyphs["?"]!
            for (row, bits) in rows.enumerated() {
                for column in 0..<Self.glyphWidth where bits & (1 << (Self.glyphWidth - 1 - column)) != 0 {
                    // Glyph (column, row) -> canvas (x + row, penY - column).
                    fillRect(x0: Double(x + row * scale), y0: Double(penY - (column + 1) * scale),
                             x1: Double(x + (row + 1) * scale), y1: Double(penY - column * scale), color: color)
                }
            }
            penY -= (Self.glyphWidth + 1) * scale
        }
    }
}

/// A 5x7 font: digits, A-Z and the punctuation that axis labels need. Each glyph is 7 rows,
/// the 5 low bits of a row are its pixels, most significant on the left.
enum BitmapFont {
    static let glyphs: [Character: [UInt8]] = {
        let drawings: [Character: [String]] = [
            "0": [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
            "1": ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
            "2": [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
            "3": ["#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "],
            "4": ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
            "5": ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
            "6": ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "],
            "7": ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
            "8": [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
            "9": [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "],
            "A": [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
            "B": ["#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "],
            "C": [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "],
            "D": ["#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "],
            "E": ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"],
            "F": ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "],
            "G": [" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"],
            "H": ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
            "I": [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
            "J": ["  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "],
            "K": ["#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"],
            "L": ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"],
            "M": ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"],
            "N": ["#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"],
            "O": [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
            "P": ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "],
            "Q": [" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"],
            "R": ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"],
            "S": [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "],
            "T": ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "],
            "U": ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
            "V": ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "],
            "W": ["#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "],
            "X": ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"],
            "Y": ["#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "],
            "Z": ["#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"],
            " ": ["     ", "     ", "     ", "     ", "     ", "     ", "     "],
            ".": ["     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "],
            ",": ["     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "],
            "-": ["     ", "     ", "     ", " ### ", "     ", "     ", "     "],
            "+": ["     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "],
            "=": ["     ", "     ", "#####", "     ", "#####", "     ", "     "],
            "%": ["##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"],
            "/": ["     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     "],
            ":": ["     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "],
            "(": ["   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "],
            ")": [" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "],
            "_": ["     ", "     ", "     ", "     ", "     ", "     ", "#####"],
            "?": [" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "],
        ]
        return drawings.mapValues { rows in
            rows.map { row in row.reduce(UInt8(0)) { ($0 << 1) | ($1 == "#" ? 1 : 0) } }
        }
    }()
}
