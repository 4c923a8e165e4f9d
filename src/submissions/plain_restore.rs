//! Restoring a plain-SQL dump over the Postgres protocol, as the restore
//! role: the splitter of [`super::plain`] reads the file, and exactly the
//! statements it returns are sent to the server, in one transaction
//! (`COPY ... FROM stdin` data through the copy-in protocol). Nothing of the
//! file is ever interpreted on pglab's machine, so there is no second
//! reader whose view of the text could differ.

use super::issues::RestoreIssue;
use super::plain::{self, Kind, Piece};
use bytes::Bytes;
use futures_util::SinkExt;
use std::collections::VecDeque;
use std::path::Path;
use std::pin::Pin;
use tokio_postgres::{Client, CopyInSink};

/// What a successful restore did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlainRun {
    pub statements: usize,
    /// Owner and privilege statements left out.
    pub skipped: usize,
}

pub use crate::pgconn::error_text;

fn failed(piece: &Piece, e: &tokio_postgres::Error) -> Vec<RestoreIssue> {
    vec![RestoreIssue {
        message: error_text(e),
        statement: Some(piece.code().to_string()),
        toc: None,
        line: Some(piece.line),
    }]
}

fn refused(line: usize, message: String) -> Vec<RestoreIssue> {
    vec![RestoreIssue {
        message,
        statement: None,
        toc: None,
        line: Some(line),
    }]
}

type Copy = Pin<Box<CopyInSink<Bytes>>>;

/// A statement sent whose answer is still to be read.
type Pending<'a> = Pin<
    Box<dyn std::future::Future<Output = (Piece, Result<(), tokio_postgres::Error>)> + Send + 'a>,
>;

/// Statements sent ahead of their answers, at most.
const PIPELINE: usize = 32;

/// Reads answers in order until at most `keep` are outstanding.
async fn settle(
    inflight: &mut VecDeque<Pending<'_>>,
    keep: usize,
) -> Result<(), Vec<RestoreIssue>> {
    while inflight.len() > keep {
        if let Some(next) = inflight.pop_front() {
            let (piece, result) = next.await;
            result.map_err(|e| failed(&piece, &e))?;
        }
    }
    Ok(())
}

/// Why the reading thread stopped early.
enum ReadStop {
    /// The restore stopped (at an error) and reads no more.
    Closed,
    Io(std::io::Error),
}

/// Restores `file` through `client` (connected to the scratch database as
/// the restore role), creating everything as `owner`, in one transaction.
/// Stops at the first error, which is returned with its statement and line;
/// a backslash line that `plain::check` refuses is such an error (the
/// preflight refused it at upload already, before anything ran).
pub async fn restore(
    client: &mut Client,
    file: &Path,
    target: &str,
    owner: &str,
) -> Result<PlainRun, Vec<RestoreIssue>> {
    let reader = std::fs::File::open(file)
        .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
        .map_err(|e| refused(0, format!("cannot read the dump: {e}")))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(16);
    // The file is read on a blocking thread while the server executes.
    let reading = tokio::task::spawn_blocking(move || {
        plain::for_each_piece(
            reader,
            |p| tx.blocking_send(p).map_err(|_| ReadStop::Closed),
            ReadStop::Io,
        )
    });
    let setup = format!("SET ROLE {}; BEGIN", crate::ident::quote_ident(owner));
    client
        .batch_execute(&setup)
        .await
        .map_err(|e| refused(0, format!("starting the restore: {}", error_text(&e))))?;
    let run = execute(client, &mut rx, target).await?;
    match reading.await {
        Ok(Ok(_)) => {}
        Ok(Err(ReadStop::Io(e))) => return Err(refused(0, format!("reading the dump: {e}"))),
        _ => return Err(refused(0, "the dump could not be read to its end".into())),
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| refused(0, format!("committing: {}", error_text(&e))))?;
    Ok(run)
}

/// Sends the pieces to the server as they come: statements pipelined (each
/// sent as soon as it is read, in order, answers read up to `PIPELINE`
/// behind; the first error in order is the one reported, the statements
/// after it fail as "aborted" in the one transaction and are not looked
/// at), COPY data through copy-in.
async fn execute(
    client: &Client,
    rx: &mut tokio::sync::mpsc::Receiver<Piece>,
    target: &str,
) -> Result<PlainRun, Vec<RestoreIssue>> {
    let mut run = PlainRun::default();
    let mut copy: Option<(Copy, Piece)> = None;
    let mut inflight: VecDeque<Pending<'_>> = VecDeque::new();
    while let Some(piece) = rx.recv().await {
        if let Some(message) = plain::refusal(&piece, target) {
            return Err(refused(piece.line, message));
        }
        match piece.kind {
            Kind::Gap | Kind::Meta => {}
            Kind::Statement if piece.owner_or_privileges => run.skipped += 1,
            Kind::Statement if piece.copy_in => {
                settle(&mut inflight, 0).await?;
                let sink = client
                    .copy_in::<_, Bytes>(piece.text.as_str())
                    .await
                    .map_err(|e| failed(&piece, &e))?;
                run.statements += 1;
                copy = Some((Box::pin(sink), piece));
            }
            Kind::Statement => {
                let mut next: Pending<'_> = Box::pin(async move {
                    let result = client.batch_execute(&piece.text).await;
                    (piece, result)
                });
                // One poll sends the statement now, in file order.
                match futures_util::poll!(next.as_mut()) {
                    std::task::Poll::Ready((piece, result)) => {
                        result.map_err(|e| failed(&piece, &e))?
                    }
                    std::task::Poll::Pending => inflight.push_back(next),
                }
                run.statements += 1;
                settle(&mut inflight, PIPELINE).await?;
            }
            Kind::CopyData => {
                if let Some((sink, statement)) = copy.as_mut() {
                    sink.send(Bytes::from(piece.text.into_bytes()))
                        .await
                        .map_err(|e| failed(statement, &e))?;
                }
            }
            Kind::CopyEnd => finish_copy(copy.take()).await?,
        }
    }
    settle(&mut inflight, 0).await?;
    finish_copy(copy.take()).await?;
    Ok(run)
}

async fn finish_copy(copy: Option<(Copy, Piece)>) -> Result<(), Vec<RestoreIssue>> {
    if let Some((mut sink, statement)) = copy {
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| failed(&statement, &e))?;
    }
    Ok(())
}
