//! `strato openapi`: the HTTP API's OpenAPI document, as served at `/openapi.json`.

use anyhow::{Context, Result};

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) fn openapi() -> Result<()> {
    // The capabilities `serve` mounts are in the document too.
    let doc = strato_http::openapi_document_with(vec![
        strato_functions::api_routes(),
        strato_workflows::api_routes(),
        strato_media::http::api_routes(),
    ]);
    println!("{}", doc.to_pretty_json().context("cannot write the OpenAPI document")?);
    Ok(())
}
