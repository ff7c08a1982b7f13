//! WinAnsiEncoding and the widths of the two standard fonts used (Helvetica, Helvetica-Bold).
//!
//! The 14 standard fonts need no embedding, which keeps the report small and the writer
//! simple, but their text is limited to one byte per character. WinAnsi (Windows-1252) covers
//! French entirely (é è ê ë à â ç ù û ô î ï œ æ « » ’ € …); anything else becomes `?`.
//! The widths are those of Adobe's AFM files (1/1000 of the font size), needed to wrap lines:
//! the viewer uses its own copy of the metrics, ours only decides where lines break.

use unicode_normalization::UnicodeNormalization;

/// One of the two fonts of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Font {
    Regular,
    Bold,
}

impl Font {
    /// The resource name in the page's font dictionary.
    pub(crate) fn resource(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
        }
    }
}

/// The WinAnsi bytes of a text: NFC first (a decomposed "e" + U+0301 becomes "é"), tabs and
/// unusual spaces become spaces, control characters are dropped, and every character outside
/// WinAnsi becomes `?`. New lines must have been split off by the caller.
pub(crate) fn encode(text: &str) -> Vec<u8> {
    text.nfc().filter_map(encode_char).collect()
}

fn encode_char(c: char) -> Option<u8> {
    let code = u32::from(c);
    match c {
        '\t' | '\u{2000}'..='\u{200A}' | '\u{3000}' => Some(b' '),
        // French puts a narrow no-break space before « ; : ! ? »; WinAnsi only has the wide one.
        '\u{202F}' => Some(0xA0),
        // Zero-width and direction marks carry no glyph; dropping them keeps the line readable.
        '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}' => None,
        _ if c.is_control() => None,
        _ if (0x20..0x7F).contains(&code) || (0xA0..=0xFF).contains(&code) => {
            u8::try_from(code).ok()
        }
        _ => Some(match c {
            '€' => 0x80,
            '‚' => 0x82,
            'ƒ' => 0x83,
            '„' => 0x84,
            '…' => 0x85,
            '†' => 0x86,
            '‡' => 0x87,
            'ˆ' => 0x88,
            '‰' => 0x89,
            'Š' => 0x8A,
            '‹' => 0x8B,
            'Œ' => 0x8C,
            'Ž' => 0x8E,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '˜' => 0x98,
            '™' => 0x99,
            'š' => 0x9A,
            '›' => 0x9B,
            'œ' => 0x9C,
            'ž' => 0x9E,
            'Ÿ' => 0x9F,
            // A non-breaking hyphen prints as a hyphen.
            '\u{2011}' => b'-',
            _ => b'?',
        }),
    }
}

/// The width of a WinAnsi byte, in 1/1000 of the font size.
pub(crate) fn width(font: Font, byte: u8) -> u16 {
    let table = match font {
        Font::Regular => &HELVETICA,
        Font::Bold => &HELVETICA_BOLD,
    };
    match byte {
        0x20..=0x7E => table.ascii[usize::from(byte - 0x20)],
        0x80..=0x9F => table.high[usize::from(byte - 0x80)],
        0xA0..=0xFF => table.latin1[usize::from(byte - 0xA0)],
        // Never produced by `encode`; a wide default keeps a line from overflowing.
        _ => 1000,
    }
}

/// The width of WinAnsi text in points at `size`.
pub(crate) fn text_width(font: Font, bytes: &[u8], size: f32) -> f32 {
    let units: u32 = bytes.iter().map(|&b| u32::from(width(font, b))).sum();
    units as f32 * size / 1000.0
}

struct Widths {
    /// 0x20..=0x7E
    ascii: [u16; 95],
    /// 0x80..=0x9F (the codes WinAnsi leaves undefined are given the width of a bullet)
    high: [u16; 32],
    /// 0xA0..=0xFF
    latin1: [u16; 96],
}

/// From Adobe's Helvetica.afm.
#[rustfmt::skip]
const HELVETICA: Widths = Widths {
    ascii: [
        278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space../
        556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0..?
        1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @..O
        667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P.._
        333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // `..o
        556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,      // p..~
    ],
    high: [
        556, 350, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,
        350, 222, 222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 350, 500, 667,
    ],
    latin1: [
        278, 333, 556, 556, 556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333,
        400, 584, 333, 333, 333, 556, 537, 278, 333, 333, 365, 556, 834, 834, 834, 611,
        667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
        722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
        556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278,
        556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,
    ],
};

/// From Adobe's Helvetica-Bold.afm.
#[rustfmt::skip]
const HELVETICA_BOLD: Widths = Widths {
    ascii: [
        278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
        556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
        975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
        667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
        333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
        611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
    ],
    high: [
        556, 350, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,
        350, 278, 278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 350, 500, 667,
    ],
    latin1: [
        278, 333, 556, 556, 556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333,
        400, 584, 333, 333, 333, 611, 556, 278, 333, 333, 365, 556, 834, 834, 834, 611,
        722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
        722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
        556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278,
        611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_text_maps_into_winansi() {
        assert_eq!(
            encode("é è ê à ç ù ô î œ « » ’ €"),
            vec![
                0xE9, b' ', 0xE8, b' ', 0xEA, b' ', 0xE0, b' ', 0xE7, b' ', 0xF9, b' ', 0xF4, b' ',
                0xEE, b' ', 0x9C, b' ', 0xAB, b' ', 0xBB, b' ', 0x92, b' ', 0x80
            ]
        );
    }

    #[test]
    fn decomposed_accents_are_composed_first() {
        assert_eq!(encode("e\u{301}"), vec![0xE9]);
    }

    #[test]
    fn characters_outside_winansi_become_question_marks_and_controls_vanish() {
        assert_eq!(encode("a😀b\u{0}c\u{5d0}"), b"a?bc?".to_vec());
    }

    #[test]
    fn widths_follow_the_afm_files() {
        assert_eq!(width(Font::Regular, b' '), 278);
        assert_eq!(width(Font::Regular, b'W'), 944);
        assert_eq!(width(Font::Regular, 0xE9), 556, "é");
        assert_eq!(width(Font::Bold, b'i'), 278);
        assert_eq!(width(Font::Bold, 0x80), 556, "€");
        assert!((text_width(Font::Regular, b"ii", 10.0) - 4.44).abs() < 1e-3);
    }
}
