//! `strato openapi`: the HTTP API's OpenAPI document, as served at `/openapi.json`.

use anyhow::{Context, Result};

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) fn openapi() -> Result<()> {
    println!("{}", strato_http::openapi_document().to_pretty_json().context("cannot write the OpenAPI document")?);
    Ok(())
}
