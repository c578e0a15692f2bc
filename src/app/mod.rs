//! Desktop application (eframe/egui).
