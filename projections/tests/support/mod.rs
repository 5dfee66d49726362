//! Set-up shared by the projection tests.

use tokio_postgres::Client;

/// A fresh, migrated database: its URL and a client on it.
pub async fn fresh_database() -> (String, Client) {
    let db = chronicle_testkit::fresh_database().await;
    let mut client = chronicle_testkit::connect(&db).await;
    chronicle_projections::migrate::run(&mut client)
        .await
        .unwrap();
    (db, client)
}
