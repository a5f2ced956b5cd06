//! One conformance suite for every [`Store`] implementation.

use super::{Precondition, Store, StoreError};

/// Runs every check against `store`, which must start empty.
pub(crate) async fn run_all(store: &dyn Store) {
    put_get_versions(store).await;
    preconditions(store).await;
    list_prefix(store).await;
    delete(store).await;
    concurrent_cas_counter(store).await;
}

async fn put_get_versions(store: &dyn Store) {
    assert!(store.get("a/1").await.expect("get").is_none());
    let v1 = store
        .put("a/1", b"one".to_vec(), Precondition::Absent)
        .await
        .expect("put");
    let got = store.get("a/1").await.expect("get").expect("present");
    assert_eq!(got.value, b"one");
    assert_eq!(got.version, v1);
    let v2 = store
        .put("a/1", b"uno".to_vec(), Precondition::Version(v1))
        .await
        .expect("cas put");
    assert!(v2 > v1, "versions increase");
    let got = store.get("a/1").await.expect("get").expect("present");
    assert_eq!((got.value.as_slice(), got.version), (&b"uno"[..], v2));
}

async fn preconditions(store: &dyn Store) {
    store
        .put("p", b"x".to_vec(), Precondition::Absent)
        .await
        .expect("first");
    let err = store
        .put("p", b"y".to_vec(), Precondition::Absent)
        .await
        .expect_err("absent fails on existing key");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let current = store.get("p").await.expect("get").expect("present");
    let err = store
        .put(
            "p",
            b"y".to_vec(),
            Precondition::Version(current.version + 100),
        )
        .await
        .expect_err("stale version");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let err = store
        .put("missing", b"y".to_vec(), Precondition::Version(1))
        .await
        .expect_err("version on missing key");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    store
        .put("p", b"z".to_vec(), Precondition::None)
        .await
        .expect("unconditional");
    assert_eq!(
        store.get("p").await.expect("get").expect("present").value,
        b"z"
    );
}

async fn list_prefix(store: &dyn Store) {
    for k in ["l/b", "l/a", "l/c", "lz", "k"] {
        store
            .put(k, k.as_bytes().to_vec(), Precondition::None)
            .await
            .expect("put");
    }
    let keys: Vec<String> = store
        .list("l/")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["l/a", "l/b", "l/c"]);
    assert!(store.list("nothing/").await.expect("list").is_empty());
    let page = |after: Option<&'static str>, limit: usize| async move {
        store
            .list_page("l/", after, limit)
            .await
            .expect("list page")
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(k.as_bytes(), v.value.as_slice());
                k
            })
            .collect::<Vec<String>>()
    };
    assert_eq!(page(None, 2).await, vec!["l/a", "l/b"]);
    assert_eq!(page(Some("l/b"), 2).await, vec!["l/c"]);
    assert!(page(Some("l/c"), 2).await.is_empty());
    // `after` need not be a stored key, nor under the prefix.
    assert_eq!(page(Some("l/aa"), 5).await, vec!["l/b", "l/c"]);
    assert_eq!(page(Some("a"), 5).await, vec!["l/a", "l/b", "l/c"]);
    assert!(page(Some("m"), 5).await.is_empty());
    assert!(page(None, 0).await.is_empty());
    assert!(
        store
            .list_page("nothing/", None, 5)
            .await
            .expect("list page")
            .is_empty()
    );
}

async fn delete(store: &dyn Store) {
    let v = store
        .put("d", b"x".to_vec(), Precondition::None)
        .await
        .expect("put");
    let err = store
        .delete("d", Precondition::Version(v + 1))
        .await
        .expect_err("stale delete");
    assert!(matches!(err, StoreError::Conflict { .. }));
    store
        .delete("d", Precondition::Version(v))
        .await
        .expect("delete");
    assert!(store.get("d").await.expect("get").is_none());
    store
        .delete("d", Precondition::None)
        .await
        .expect("deleting an absent key is fine");
}

/// Many concurrent read-modify-write increments: with CAS and retries, none
/// is lost.
async fn concurrent_cas_counter(store: &dyn Store) {
    store
        .put("counter", b"0".to_vec(), Precondition::Absent)
        .await
        .expect("init");
    let tasks = (0..8).map(|_| async {
        for _ in 0..10 {
            loop {
                let cur = store.get("counter").await.expect("get").expect("present");
                let n: u64 = String::from_utf8_lossy(&cur.value).parse().expect("number");
                match store
                    .put(
                        "counter",
                        (n + 1).to_string().into_bytes(),
                        Precondition::Version(cur.version),
                    )
                    .await
                {
                    Ok(_) => break,
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }
    });
    futures::future::join_all(tasks).await;
    let cur = store.get("counter").await.expect("get").expect("present");
    assert_eq!(cur.value, b"80");
}
