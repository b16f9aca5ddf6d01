//! ANSI colours, only when asked for: a terminal gets colour, a pipe plain text.

use std::io::IsTerminal;

use crate::cli::ColorChoice;

/// Whether stdout should be coloured.
pub fn stdout_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

/// Paints text when colour is on.
#[derive(Clone, Copy, Debug)]
pub struct Paint {
    /// Whether to emit escapes.
    pub on: bool,
}

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Green: added, passed, true.
    pub fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }

    /// Red: removed, failed, false.
    pub fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }

    /// Yellow: changed.
    pub fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }

    /// Bold: headings.
    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    /// Dim: locations and other asides.
    pub fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
}
