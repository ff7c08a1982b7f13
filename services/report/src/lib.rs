//! The tele-expertise report (being built).
