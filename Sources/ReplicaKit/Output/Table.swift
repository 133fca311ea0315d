/// A plain-text table for people: a header row and left-aligned columns as wide as their widest
/// cell, two spaces apart.
public struct Table: CustomStringConvertible {
    /// The column titles.
    public var header: [String]
    /// The rows, each as many cells as the header.
    public var rows: [[String]] = []

    /// An empty table with these columns.
    public init(_ header: [String]) { self.header = header }

    /// Adds a row.
    public mutating func append(_ row: [String]) { rows.append(row) }

    public var description: String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count + 2)
            }.joined()
        }.joined(separator: "\n")
    }
}
