//! CSV cells that are safe to open in a spreadsheet.

/// Makes a text cell safe to open in a spreadsheet: a cell that starts with `=`, `+`, `-`,
/// `@`, a tab or a carriage return would be read as a formula, so it gets a leading `'`.
pub fn text_cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(text_cell("=HYPERLINK(\"http://x\")"), "'=HYPERLINK(\"http://x\")");
        for bad in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(text_cell(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(text_cell("Maria"), "Maria");
        assert_eq!(text_cell(""), "");
    }
}
