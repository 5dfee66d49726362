//! Set-up shared by the projection tests.

use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

/// A fresh, migrated database: its URL and a client on it.
pub async fn fresh_database() -> (String, Client) {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is not set: run scripts/test");
    let (admin, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let name = format!("t_{}", Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let db = format!("{base}/{name}");
    let (mut client, conn) = tokio_postgres::connect(&db, NoTls).await.unwrap();
    tokio::spawn(conn);
    chronicle_projections::migrate::run(&mut client)
        .await
        .unwrap();
    (db, client)
}
