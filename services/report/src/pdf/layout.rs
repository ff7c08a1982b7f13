//! Placing text and images on A4 pages: line wrapping by the font widths, page breaks, and the
//! drawing operators of each page. Positions are in PDF points (1/72 inch), origin bottom left.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::winansi::{self, Font};

pub(crate) const PAGE_WIDTH: f32 = 595.0;
pub(crate) const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const TOP: f32 = PAGE_HEIGHT - MARGIN;
/// Text stops here; the page number sits below.
const BOTTOM: f32 = MARGIN + 10.0;
const FOOTER_Y: f32 = MARGIN - 24.0;
pub(crate) const TEXT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;

pub(crate) const BODY_SIZE: f32 = 10.0;
const LEADING: f32 = 1.3;

/// A run of text in one font: a label in bold followed by its value, for instance.
pub(crate) type Run<'a> = (Font, &'a str);

/// One laid-out line: segments of WinAnsi bytes, each in its font.
type Line = Vec<(Font, Vec<u8>)>;

/// The pages being filled, top to bottom.
pub(crate) struct Layout {
    pages: Vec<Page>,
    y: f32,
}

/// The drawing operators of one page and the images it shows.
#[derive(Default)]
pub(crate) struct Page {
    pub(crate) content: String,
    pub(crate) images: BTreeSet<usize>,
}

impl Layout {
    pub(crate) fn new() -> Layout {
        Layout {
            pages: vec![Page::default()],
            y: TOP,
        }
    }

    /// The pages, each with its footer ("page 1/2") added now that the count is known.
    pub(crate) fn finish(mut self, footer: &str) -> Vec<Page> {
        let count = self.pages.len();
        for (index, page) in self.pages.iter_mut().enumerate() {
            let text = format!("{footer} — page {}/{count}", index + 1);
            let bytes = winansi::encode(&text);
            let width = winansi::text_width(Font::Regular, &bytes, 8.0);
            let x = PAGE_WIDTH - MARGIN - width;
            draw_text(&mut page.content, Font::Regular, 8.0, x, FOOTER_Y, &bytes);
        }
        self.pages
    }

    /// Vertical space, dropped at the top of a page.
    pub(crate) fn space(&mut self, points: f32) {
        if self.y < TOP {
            self.y -= points;
        }
    }

    /// Makes sure `height` points fit below the current position, else starts a new page.
    fn reserve(&mut self, height: f32) {
        if self.y - height < BOTTOM && self.y < TOP {
            self.pages.push(Page::default());
            self.y = TOP;
        }
    }

    fn page(&mut self) -> &mut Page {
        if self.pages.is_empty() {
            self.pages.push(Page::default());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// A title or section heading; kept on the same page as the two lines that follow it.
    pub(crate) fn heading(&mut self, text: &str, size: f32) {
        self.space(size * 0.8);
        self.reserve(size * LEADING + 2.0 * BODY_SIZE * LEADING);
        self.paragraph(&[(Font::Bold, text)], size, 0.0);
        self.space(size * 0.2);
    }

    /// Text in runs of fonts, wrapped to the text width less `indent`; new lines in the text
    /// start new lines, an empty line leaves half a line of space.
    pub(crate) fn paragraph(&mut self, runs: &[Run<'_>], size: f32, indent: f32) {
        let width = (TEXT_WIDTH - indent).max(size);
        for line in wrap(runs, size, width) {
            self.line(&line, size, indent);
        }
    }

    fn line(&mut self, line: &Line, size: f32, indent: f32) {
        let height = size * LEADING;
        self.reserve(height);
        self.y -= height;
        let (mut x, y) = (MARGIN + indent, self.y + size * 0.25);
        let page = self.page();
        for (font, bytes) in line {
            draw_text(&mut page.content, *font, size, x, y, bytes);
            x += winansi::text_width(*font, bytes, size);
        }
    }

    /// A row of images, each fitted in a `box_side` square, with its caption below.
    pub(crate) fn image_row(&mut self, images: &[(usize, f32, f32, &str)], box_side: f32) {
        let caption_size = 8.0;
        let gap = 12.0;
        let captions: Vec<Vec<Line>> = images
            .iter()
            .map(|(_, _, _, caption)| {
                let mut lines = wrap(&[(Font::Regular, caption)], caption_size, box_side);
                lines.truncate(3);
                lines
            })
            .collect();
        let caption_lines = captions.iter().map(Vec::len).max().unwrap_or(0);
        let height = box_side + 4.0 + caption_lines as f32 * caption_size * LEADING;
        self.reserve(height);
        let top = self.y;
        let page_index = self.pages.len().saturating_sub(1);
        for (column, ((index, width, height_px, _), caption)) in
            images.iter().zip(&captions).enumerate()
        {
            let left = MARGIN + column as f32 * (box_side + gap);
            let scale = (box_side / width.max(1.0)).min(box_side / height_px.max(1.0));
            let (w, h) = (width * scale, height_px * scale);
            let page = &mut self.pages[page_index];
            page.images.insert(*index);
            let _ = writeln!(
                page.content,
                "q {w:.2} 0 0 {h:.2} {left:.2} {:.2} cm /Im{index} Do Q",
                top - h
            );
            let mut y = top - box_side - 4.0;
            for line in caption {
                y -= caption_size * LEADING;
                let mut x = left;
                for (font, bytes) in line {
                    draw_text(&mut page.content, *font, caption_size, x, y, bytes);
                    x += winansi::text_width(*font, bytes, caption_size);
                }
            }
        }
        self.y = top - height;
        self.space(6.0);
    }
}

fn draw_text(content: &mut String, font: Font, size: f32, x: f32, y: f32, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let _ = writeln!(
        content,
        "BT /{} {size:.1} Tf {x:.2} {y:.2} Td ({}) Tj ET",
        font.resource(),
        escape(bytes)
    );
}

/// A PDF literal string's content: `(`, `)` and `\` escaped, bytes outside printable ASCII
/// written in octal so that the content stream stays ASCII.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for &byte in bytes {
        match byte {
            b'(' | b')' | b'\\' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            0x20..=0x7E => out.push(char::from(byte)),
            _ => {
                let _ = write!(out, "\\{byte:03o}");
            }
        }
    }
    out
}

/// Greedy line breaking on spaces by the fonts' widths; a word wider than a line is cut where it
/// overflows. `\r\n`, `\r` and `\n` all start a new line.
fn wrap(runs: &[Run<'_>], size: f32, max_width: f32) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    let mut line: Line = Vec::new();
    let mut line_width = 0.0f32;
    let space = |font| winansi::text_width(font, b" ", size);

    for (font, text) in runs {
        let font = *font;
        let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
        for (number, paragraph) in normalised.split('\n').enumerate() {
            if number > 0 {
                lines.push(std::mem::take(&mut line));
                line_width = 0.0;
            }
            let bytes = winansi::encode(paragraph);
            for word in bytes.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
                let word_width = winansi::text_width(font, word, size);
                if !line.is_empty() && line_width + space(font) + word_width <= max_width {
                    push_word(&mut line, font, word, true);
                    line_width += space(font) + word_width;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                // The word starts a line; cut it while it is wider than the line.
                let mut rest = word;
                loop {
                    let fits = fitting_prefix(font, rest, size, max_width);
                    if fits == rest.len() {
                        push_word(&mut line, font, rest, false);
                        line_width = winansi::text_width(font, rest, size);
                        break;
                    }
                    let (head, tail) = rest.split_at(fits);
                    lines.push(vec![(font, head.to_vec())]);
                    rest = tail;
                }
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// How many bytes of `word` fit in `max_width` (at least one, so that cutting always advances).
fn fitting_prefix(font: Font, word: &[u8], size: f32, max_width: f32) -> usize {
    let mut width = 0.0;
    for (index, &byte) in word.iter().enumerate() {
        width += f32::from(winansi::width(font, byte)) * size / 1000.0;
        if width > max_width {
            return index.max(1);
        }
    }
    word.len()
}

fn push_word(line: &mut Line, font: Font, word: &[u8], space_before: bool) {
    match line.last_mut() {
        Some((last_font, bytes)) if *last_font == font => {
            if space_before {
                bytes.push(b' ');
            }
            bytes.extend_from_slice(word);
        }
        _ => {
            let mut bytes = Vec::with_capacity(word.len() + 1);
            if space_before && !line.is_empty() {
                bytes.push(b' ');
            }
            bytes.extend_from_slice(word);
            line.push((font, bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths(lines: &[Line]) -> Vec<f32> {
        lines
            .iter()
            .map(|line| {
                line.iter()
                    .map(|(font, bytes)| winansi::text_width(*font, bytes, BODY_SIZE))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn long_text_wraps_within_the_width() {
        let text = "Lésion pigmentée asymétrique de 8 mm, bords irréguliers. ".repeat(20);
        let lines = wrap(&[(Font::Regular, &text)], BODY_SIZE, 200.0);
        assert!(lines.len() > 5, "{} lines", lines.len());
        for width in widths(&lines) {
            assert!(width <= 200.0, "a line of {width} pt");
        }
    }

    #[test]
    fn a_word_longer_than_a_line_is_cut() {
        let word = "x".repeat(500);
        let lines = wrap(&[(Font::Regular, &word)], BODY_SIZE, 100.0);
        assert!(lines.len() >= 20);
        let total: usize = lines.iter().flatten().map(|(_, b)| b.len()).sum();
        assert_eq!(total, 500, "nothing lost");
    }

    #[test]
    fn a_label_and_its_value_share_the_line() {
        let lines = wrap(
            &[(Font::Bold, "Nom :"), (Font::Regular, "Lefèvre")],
            BODY_SIZE,
            TEXT_WIDTH,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0][0], (Font::Bold, b"Nom :".to_vec()));
        assert_eq!(lines[0][1], (Font::Regular, b" Lef\xE8vre".to_vec()));
    }

    #[test]
    fn string_delimiters_are_escaped() {
        assert_eq!(escape(b"a(b)c\\d\xE9\n"), "a\\(b\\)c\\\\d\\351\\012");
    }
}
