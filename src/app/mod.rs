//! The application layer: one function per thing a user does, called by
//! every face alike (the CLI, the web pages, the JSON API, `pglab up`).
//! Faces parse their input, call one of these, and render the result; the
//! functions here use the domain (lab, provision, scoring, submissions,
//! generate) and the stores, and never a face.

pub mod analytics;
pub mod deadlines;
pub mod evidence;
pub mod exports;
pub mod jobs;
pub mod lab_upload;
pub mod labs;
pub mod mail;
pub mod moves;
pub mod participants;
pub mod snapshots;
pub mod submissions;
pub mod tokens;

pub use jobs::Queue;
pub use labs::{
    apply_lab, check_lab_loads, default_generate_options, mutation_report, write_generated, Applied,
};
pub use participants::psql_command;
pub use submissions::{hand_in, human_size, Accepted, UploadError};
