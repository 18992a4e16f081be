//! Source code split at top-level items, cheaply and for any language.
//!
//! A top-level item starts on a line that begins at column 0, follows a
//! blank line, and does not close a block (`}`, `)`, `]`, `end`) or
//! continue a statement (`else`, `elif`, `except`, `catch`, `finally`). In
//! brace languages and in Python alike this finds functions, classes,
//! impls and their leading comments or decorators, so chunks of code end
//! between items rather than inside one.

/// Byte ranges of the items of `text`, contiguous and covering all of it.
pub(crate) fn items(text: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![0];
    let mut previous_blank = true;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let blank = line.trim().is_empty();
        if !blank && previous_blank && offset > 0 && opens_item(line) {
            starts.push(offset);
        }
        previous_blank = blank;
        offset += line.len();
    }
    starts
        .iter()
        .zip(starts.iter().skip(1).chain(std::iter::once(&text.len())))
        .map(|(&a, &b)| (a, b))
        .filter(|(a, b)| a < b)
        .collect()
}

fn opens_item(line: &str) -> bool {
    const CONTINUATIONS: &[&str] = &[
        "else", "elif", "except", "catch", "finally", "end", "fi", "done", "esac",
    ];
    let Some(first) = line.chars().next() else {
        return false;
    };
    if first.is_whitespace() || matches!(first, '}' | ')' | ']') {
        return false;
    }
    let word: String = line
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    !CONTINUATIONS.contains(&word.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        items(text).into_iter().map(|(a, b)| &text[a..b]).collect()
    }

    #[test]
    fn rust_items_with_comments_stay_whole() {
        let text =
            "use std::fmt;\n\n/// Doc.\nfn a() {\n    let x = 1;\n\n    x\n}\n\nimpl B {\n}\n";
        assert_eq!(
            pieces(text),
            vec![
                "use std::fmt;\n\n",
                "/// Doc.\nfn a() {\n    let x = 1;\n\n    x\n}\n\n",
                "impl B {\n}\n"
            ]
        );
    }

    #[test]
    fn python_blocks_and_continuations() {
        let text = "import os\n\n\n@dec\ndef f():\n    pass\n\n    return 1\n\ntry:\n    f()\n\nexcept E:\n    pass\n";
        assert_eq!(
            pieces(text),
            vec![
                "import os\n\n\n",
                "@dec\ndef f():\n    pass\n\n    return 1\n\n",
                "try:\n    f()\n\nexcept E:\n    pass\n"
            ]
        );
        assert!(items("").is_empty());
    }
}
