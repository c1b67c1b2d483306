//! Writing to stdout without panicking when the reader goes away (`runbook list | head`).

use std::io::Write;

/// Prints `text` with every character that would act on the terminal made visible (line
/// breaks and tabs kept): what is printed quotes files, journals, plans and the shared
/// store, and none of it may move the cursor or rewrite a line (SPEC rule 11).
pub fn print(text: &str) {
    let text = runbook_lang::diagnostic::escape_text(text);
    let mut stdout = std::io::stdout().lock();
    // A closed pipe means nobody reads the rest; that is not an error worth a panic.
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}
