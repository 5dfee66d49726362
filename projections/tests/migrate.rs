//! The migration runner against a real Postgres: applies once, refuses an edited applied
//! migration, and leaves the analysts' role able to read `read` and nothing more.

use chronicle_projections::migrate::{self, MIGRATIONS, MigrateError, Migration};
use tokio_postgres::Client;

/// A database of its own for one test, on the server `scripts/test` started.
async fn fresh_database() -> Client {
    chronicle_testkit::connect(&chronicle_testkit::fresh_database().await).await
}

#[tokio::test]
async fn applies_every_migration_once() {
    let mut db = fresh_database().await;
    let applied = migrate::run(&mut db).await.unwrap();
    assert_eq!(
        applied,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    assert!(migrate::run(&mut db).await.unwrap().is_empty());
    let n: i64 = db
        .query_one("SELECT count(*) FROM public.chronicle_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, MIGRATIONS.len());
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let mut db = fresh_database().await;
    migrate::run(&mut db).await.unwrap();
    let mut edited: Vec<Migration> = MIGRATIONS.to_vec();
    edited[0].sql = "CREATE SCHEMA IF NOT EXISTS read; -- edited";
    match migrate::run_these(&mut db, &edited).await {
        Err(MigrateError::Edited { version, .. }) => assert_eq!(version, edited[0].version),
        other => panic!("expected Edited, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    let mut db = fresh_database().await;
    migrate::run(&mut db).await.unwrap();
    let mut more: Vec<Migration> = MIGRATIONS.to_vec();
    more.push(Migration {
        version: 9999,
        name: "9999_broken",
        sql: "CREATE TABLE read.half_done (x int); SELECT * FROM no_such_table;",
    });
    assert!(matches!(
        migrate::run_these(&mut db, &more).await,
        Err(MigrateError::Failed { version: 9999, .. })
    ));
    let exists: bool = db
        .query_one("SELECT to_regclass('read.half_done') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "a failed migration's statements are rolled back");
}

#[tokio::test]
async fn the_analyst_role_may_only_select_in_read() {
    let mut db = fresh_database().await;
    migrate::run(&mut db).await.unwrap();
    db.batch_execute("SET ROLE chronicle_analyst")
        .await
        .unwrap();
    db.query("SELECT * FROM read.projection_checkpoints", &[])
        .await
        .expect("analysts can read the read models");
    let insert = db
        .execute(
            "INSERT INTO read.projection_checkpoints (name) VALUES ('x')",
            &[],
        )
        .await;
    assert!(insert.is_err(), "analysts cannot write");
    let ddl = db.batch_execute("CREATE TABLE read.mine (x int)").await;
    assert!(ddl.is_err(), "analysts cannot create tables");
}
