//! DICOM for the telehealth suite (being built).
