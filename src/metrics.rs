//! `/metrics`: pglab's health (its own registry, rendered at each scrape;
//! it is small) and the scores of the latest round, written once when the
//! round was published (`scoring::exposition`), so a scrape never waits on
//! a round, costs the same for any class size, and removed participants
//! disappear with the next round.

use crate::scoring::{Board, Health};
use bytes::Bytes;
use prometheus::{Encoder, TextEncoder};
use std::sync::Arc;

pub struct Metrics {
    pub health: Arc<Health>,
    pub board: Board,
}

impl Metrics {
    pub fn new(health: Arc<Health>, board: Board) -> Self {
        Self { health, board }
    }

    fn health_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.health.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        out
    }

    /// The whole exposition as parts of one body: plain text, or (`gzip`)
    /// one gzip member whose large part was compressed once per round.
    pub fn render_parts(&self, gzip: bool) -> Vec<Bytes> {
        let health = self.health_text();
        let scores = self.board.scores();
        if gzip {
            scores.gzip_after(&health)
        } else {
            vec![Bytes::from(health), scores.text.clone()]
        }
    }

    /// The whole exposition as text.
    pub fn render(&self) -> String {
        let parts = self.render_parts(false);
        let mut out = String::new();
        for p in parts {
            out.push_str(std::str::from_utf8(&p).expect("utf-8"));
        }
        out
    }
}
