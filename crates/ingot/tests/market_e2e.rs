//! The auction API of seed 003 against the real binary: the README's walk-through and the
//! original code's paths, every validation and ownership rule, tokens kept apart from the
//! platform's, the WebSocket (authentication first, broadcasts to several clients while
//! one never reads), and concurrent bidding from many connections with its invariants
//! checked, again after a SIGKILL and a restart.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Api, Server};
use tokio_tungstenite::tungstenite::Message;

/// A client of the auction API: plain HTTP, its own token.
#[derive(Clone)]
struct Market {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Market {
    fn new(server: &Server) -> Self {
        Self { http: reqwest::Client::new(), base: server.http.clone(), token: None }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Api::send(rb).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn put(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, None).await
    }

    /// Signs `name` up and in.
    async fn user(server: &Server, name: &str) -> Self {
        let mut m = Self::new(server);
        let creds = json!({"username": name, "password": format!("{name}-password")});
        assert_eq!(m.post("/v1/signup", creds.clone()).await.0, 201, "signup {name}");
        let (status, body) = m.post("/v1/login", creds).await;
        assert_eq!(status, 200, "{body}");
        m.token = Some(body["token"].as_str().unwrap().to_string());
        m
    }

    async fn offer(&self, title: &str, price: f64, lifetime: i64) -> String {
        let (status, body) =
            self.post("/v1/offer", json!({"title": title, "bid_price": price, "lifetime": lifetime})).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Every bid of an offer (all pages).
    async fn all_bids(&self, offer: &str) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 0.. {
            let (status, body) = self.get(&format!("/v1/offer/{offer}/bids?size=100&page={page}")).await;
            assert_eq!(status, 200, "{body}");
            let got = body.as_array().unwrap().clone();
            let done = got.len() < 100;
            all.extend(got);
            if done {
                break;
            }
        }
        all
    }
}

fn assert_refused(got: (u16, Value), status: u16, words: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let message = got.1["message"].as_str().unwrap_or_else(|| panic!("a JSON message: {}", got.1));
    assert!(message.contains(words), "{message:?} should say {words:?}");
}

#[tokio::test]
async fn the_readme_walk_through_and_the_original_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let anon = Market::new(&server);
    assert_eq!(anon.get("/ping").await.0, 200);

    let creds = json!({"username": "Azerbaijan", "password": "baku-baku"});
    let (status, body) = anon.post("/v1/signup", creds.clone()).await;
    assert_eq!((status, &body["username"]), (201, &json!("Azerbaijan")));
    assert_refused(anon.post("/v1/signup", creds.clone()).await, 400, "User Already Exist");
    assert_refused(
        anon.post("/v1/login", json!({"username": "Azerbaijan", "password": "wrong-one"})).await,
        403,
        "wrong",
    );
    assert_refused(anon.post("/v1/login", json!({"username": "nobody", "password": "baku-baku"})).await, 403, "wrong");
    let (status, body) = anon.post("/v1/login", creds).await;
    assert_eq!(status, 200, "{body}");
    let seller = Market { token: Some(body["token"].as_str().unwrap().into()), ..anon.clone() };

    let (status, offer) = seller
        .post("/v1/offer", json!({"bid_price": 12.34, "lifetime": 0, "photo_url": "", "title": "Swiss Shales"}))
        .await;
    assert_eq!(status, 201, "{offer}");
    for key in ["id", "bid_price", "go_live", "lifetime", "photo_url", "title", "created_by", "sold"] {
        assert!(offer.get(key).is_some(), "offer has {key}: {offer}");
    }
    assert_eq!((offer["created_by"].as_str(), offer["sold"].as_bool()), (Some("Azerbaijan"), Some(false)));
    let offer_id = offer["id"].as_str().unwrap().to_string();
    assert_eq!(offer_id.len(), 24);

    let (status, list) = seller.get("/v1/offer?size=10&page=0&sortKey=golive").await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(1)), "{list}");
    assert_eq!(seller.get("/v1/offer/offer?size=10&page=0&sortKey=golive").await.1, list, "the code's path");
    assert_eq!(seller.get("/v1/offer?size=10&page=1").await.1, json!([]), "page is a page number; empty is []");

    let buyer = Market::user(&server, "tariksetia").await;
    let (status, bid) = buyer.post("/v1/bid", json!({"bid_price": 6832427, "offer_id": offer_id})).await;
    assert_eq!(status, 201, "{bid}");
    for key in ["id", "bid_price", "username", "offer_id", "timestamp", "accepted"] {
        assert!(bid.get(key).is_some(), "bid has {key}: {bid}");
    }
    assert_eq!((bid["accepted"].as_bool(), bid["winning"].as_bool()), (Some(false), Some(true)));
    let (status, again) = buyer.post("/v1/bids", json!({"bid_price": 6832428, "offer_id": offer_id})).await;
    assert_eq!((status, again["winning"].as_bool()), (201, Some(true)), "the code's /v1/bids: {again}");
    assert_eq!(seller.get(&format!("/v1/offer/{offer_id}")).await.1["bid_price"], 6832428.0);

    let bid_id = bid["id"].as_str().unwrap();
    assert_refused(buyer.put(&format!("/v1/bid/{bid_id}")).await, 403, "only the offer's creator");
    let (status, accepted) = seller.put(&format!("/vi/bid/{bid_id}")).await;
    assert_eq!((status, accepted["accepted"].as_bool()), (200, Some(true)), "the README's /vi/ typo: {accepted}");
    assert_eq!(seller.get(&format!("/v1/offer/{offer_id}")).await.1["sold"], true);
    assert_refused(seller.put(&format!("/v1/bids/{bid_id}")).await, 409, "sold already");
}

#[tokio::test]
async fn every_bad_input_is_a_clear_refusal_and_tokens_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let anon = Market::new(&server);
    let seller = Market::user(&server, "seller").await;
    let buyer = Market::user(&server, "buyer").await;

    // Twenty signups of one name at once: the store's unique key lets exactly one in.
    let racers: Vec<_> = (0..20)
        .map(|i| {
            let anon = anon.clone();
            tokio::spawn(async move {
                anon.post("/v1/signup", json!({"username": "racer", "password": format!("password-{i}")})).await.0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in racers {
        statuses.push(r.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!((statuses[0], statuses[1], statuses[19]), (201, 400, 400), "one signup wins: {statuses:?}");

    for body in [
        json!({"username": "", "password": "long-enough"}),
        json!({"username": "x", "password": "short"}),
        json!({"username": "x"}),
    ] {
        assert_eq!(anon.post("/v1/signup", body.clone()).await.0, 400, "{body}");
    }
    for (body, words) in [
        (json!({"title": "x", "bid_price": -1}), "above 0"),
        (json!({"title": "x", "bid_price": 0}), "above 0"),
        (json!({"title": "x", "bid_price": "12"}), "number"),
        (json!({"title": "x"}), "bid_price is required"),
        (json!({"title": "", "bid_price": 1}), "title"),
        (json!({"bid_price": 1}), "title is required"),
        (json!({"title": "x", "bid_price": 1, "lifetime": -5}), "lifetime"),
        (json!({"title": "x", "bid_price": 1, "photo_url": "javascript:alert(1)"}), "photo_url"),
        (json!({"title": "x", "bid_price": 1, "extra": true}), "unknown field"),
    ] {
        assert_refused(seller.post("/v1/offer", body).await, 400, words);
    }
    let bad_json = seller.http.post(format!("{}/v1/offer", seller.base)).bearer_auth(seller.token.as_ref().unwrap());
    let resp = bad_json.header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_refused(seller.get("/v1/offer?page=-1").await, 400, "page");
    assert_refused(seller.get("/v1/offer?size=1000").await, 400, "size");
    assert_refused(seller.get("/v1/offer?sortKey=price").await, 400, "sortKey");

    let offer = seller.offer("vase", 10.0, 0).await;
    let short = seller.offer("flash sale", 10.0, 1).await;
    for (body, status, words) in [
        (json!({"bid_price": 11, "offer_id": "not-an-id"}), 400, "not an id"),
        (json!({"bid_price": 11, "offer_id": "000000000000000000000000"}), 404, "no offer"),
        (json!({"bid_price": -11, "offer_id": offer}), 400, "above 0"),
        (json!({"bid_price": 9.5, "offer_id": offer}), 400, "starting price"),
        (json!({"offer_id": offer}), 400, "bid_price is required"),
    ] {
        assert_refused(buyer.post("/v1/bid", body).await, status, words);
    }
    assert_refused(seller.post("/v1/bid", json!({"bid_price": 11, "offer_id": offer})).await, 403, "your own offer");
    assert_refused(buyer.put("/v1/bid/zzz").await, 400, "not an id");
    assert_refused(buyer.put("/v1/bid/000000000000000000000000").await, 404, "no bid");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_refused(buyer.post("/v1/bid", json!({"bid_price": 11, "offer_id": short})).await, 409, "has ended");

    // Tokens: none, a platform one, a tampered one are refused; a market token opens no
    // platform route.
    assert_refused(anon.get("/v1/offer").await, 401, "Bearer");
    let platform = Api::admin(&server).await;
    let with_platform = Market { token: platform.jwt.clone(), ..anon.clone() };
    assert_refused(with_platform.get("/v1/offer").await, 401, "not a token of this API");
    let tampered = Market { token: Some(format!("{}x", buyer.token.as_ref().unwrap())), ..anon.clone() };
    assert_eq!(tampered.get("/v1/offer").await.0, 401);
    assert_eq!(buyer.get("/device").await.0, 401, "a market token on a platform route");
    assert_eq!(buyer.get("/auth/user").await.0, 401);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(server: &Server, path: &str) -> Ws {
    let url = format!("{}{path}", server.http.replacen("http", "ws", 1));
    tokio_tungstenite::connect_async(url).await.expect("websocket").0
}

/// The next JSON message, or the close frame's code and reason (5 s).
async fn next(ws: &mut Ws) -> Result<Value, (u16, String)> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a message in 5 s");
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(Some(f)))) => return Err((u16::from(f.code), f.reason.to_string())),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Err((0, String::new())),
            Some(Ok(_)) => {}
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test]
async fn the_websocket_authenticates_first_and_a_reader_that_never_reads_stalls_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--market-auth-deadline-secs", "1", "--market-socket-queue", "8"]);
    let seller = Market::user(&server, "seller").await;
    let buyer = Market::user(&server, "buyer").await;

    // Not authenticated first, or not in time, or with a bad token: closed, with why.
    let mut ws = socket(&server, "/v1/stream").await;
    send(&mut ws, json!({"event": "get_offers"})).await;
    assert_eq!(next(&mut ws).await.unwrap_err().0, 4401);
    let mut ws = socket(&server, "/ws").await;
    let (code, reason) = next(&mut ws).await.unwrap_err();
    assert_eq!(code, 4408, "{reason}");
    let mut ws = socket(&server, "/v1/stream").await;
    send(&mut ws, json!({"event": "authenticate", "token": "nope"})).await;
    assert_eq!(next(&mut ws).await.unwrap_err().0, 4401);
    let resp = reqwest::get(format!("{}/v1/stream", server.http)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 426, "not a WebSocket request");

    // Two readers, and one that authenticates and then never reads (a tiny receive
    // buffer, so that its socket fills soon).
    let mut readers = Vec::new();
    for path in ["/v1/stream", "/ws"] {
        let mut ws = socket(&server, path).await;
        send(&mut ws, json!({"event": "authenticate", "token": buyer.token})).await;
        let hello = next(&mut ws).await.unwrap();
        assert_eq!((hello["event"].as_str(), hello["username"].as_str()), (Some("authenticated"), Some("buyer")));
        readers.push(ws);
    }
    let stalled = {
        let addr: std::net::SocketAddr = server.http.trim_start_matches("http://").parse().unwrap();
        let tcp = tokio::net::TcpSocket::new_v4().unwrap();
        tcp.set_recv_buffer_size(4096).unwrap();
        let stream = tcp.connect(addr).await.unwrap();
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/v1/stream"), stream).await.unwrap();
        send(&mut ws, json!({"event": "authenticate", "token": seller.token})).await;
        ws
    };

    // Offers with long titles and photo URLs: the stalled socket's buffers fill, its
    // queue overflows, and it is dropped, while the readers get every one.
    let photo = format!("https://example.com/{}", "p".repeat(2000));
    let mut made = Vec::new();
    let reading = tokio::spawn(async move {
        let mut seen: Vec<Vec<String>> = vec![Vec::new(); readers.len()];
        for (i, ws) in readers.iter_mut().enumerate() {
            loop {
                match next(ws).await {
                    Ok(m) if m["event"] == "offerCreated" => {
                        seen[i].push(m["offer"]["id"].as_str().unwrap().to_string());
                        if m["offer"]["title"] == "last" {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("a reader was closed: {e:?}"),
                }
            }
        }
        (seen, readers)
    });
    let metrics = Api::admin(&server).await;
    let mut dropped = false;
    for i in 0..3000 {
        let (status, body) = seller
            .post(
                "/v1/offer",
                json!({"title": format!("offer {i} {}", "t".repeat(150)), "bid_price": 1, "photo_url": photo}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        made.push(body["id"].as_str().unwrap().to_string());
        if i % 100 == 99 {
            let text = metrics.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
            if text.lines().any(|l| l.starts_with("ingot_market_sockets_dropped_total ") && !l.ends_with(" 0")) {
                dropped = true;
                break;
            }
        }
    }
    assert!(dropped, "the socket that never reads was dropped after {} offers", made.len());
    made.push(seller.offer("last", 1.0, 0).await);
    let (seen, mut readers) = reading.await.unwrap();
    for got in &seen {
        assert_eq!(got, &made, "every reader got every offer, in order");
    }
    // The stalled one, when it finally reads, finds it was closed as too slow.
    let mut stalled = stalled;
    let mut closed = None;
    while closed.is_none() {
        if let Err(e) = next(&mut stalled).await {
            closed = Some(e);
        }
    }
    assert_eq!(closed.unwrap().0, 4008);

    // get_offers answers a page; a new highest bid is told to everyone.
    send(&mut readers[0], json!({"event": "get_offers", "page": 0, "size": "5", "sort_key": "golive"})).await;
    let offers = loop {
        let m = next(&mut readers[0]).await.unwrap();
        if m["event"] == "offers" {
            break m;
        }
    };
    assert_eq!(offers["offers"].as_array().unwrap().len(), 5);
    assert_eq!(offers["offers"][0]["title"], "last", "newest first");
    send(&mut readers[0], json!({"event": "get_offers", "size": 1000})).await;
    let error = loop {
        let m = next(&mut readers[0]).await.unwrap();
        if m["event"] == "error" {
            break m;
        }
    };
    assert!(error["message"].as_str().unwrap().contains("size"), "{error}");
    let last = made.last().unwrap();
    assert_eq!(buyer.post("/v1/bid", json!({"bid_price": 5, "offer_id": last})).await.0, 201);
    for ws in readers.iter_mut() {
        let bid = loop {
            let m = next(ws).await.unwrap();
            if m["event"] == "highestBid" {
                break m;
            }
        };
        assert_eq!(
            (bid["bid"]["offer_id"].as_str(), bid["bid"]["bid_price"].as_f64()),
            (Some(last.as_str()), Some(5.0))
        );
    }
}

/// The invariants of one offer: every acknowledged bid stored; exactly one winning bid,
/// the highest (the first of equal ones); the offer's price is its price.
async fn check_offer(m: &Market, offer: &str, acked: &HashMap<String, f64>) {
    let bids = m.all_bids(offer).await;
    let stored: HashMap<String, (f64, bool)> = bids
        .iter()
        .map(|b| (b["id"].as_str().unwrap().to_string(), (b["bid_price"].as_f64().unwrap(), b["winning"] == true)))
        .collect();
    for (id, price) in acked {
        assert_eq!(stored.get(id).map(|s| s.0), Some(*price), "acknowledged bid {id} is stored");
    }
    let winners: Vec<&Value> = bids.iter().filter(|b| b["winning"] == true).collect();
    assert_eq!(winners.len(), 1, "exactly one winning bid of {offer}");
    let max = bids.iter().map(|b| b["bid_price"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    assert_eq!(winners[0]["bid_price"].as_f64(), Some(max), "the highest bid wins");
    let first_at_max = bids.iter().find(|b| b["bid_price"].as_f64() == Some(max)).unwrap();
    assert_eq!(winners[0]["id"], first_at_max["id"], "of equal bids, the first wins");
    let (_, o) = m.get(&format!("/v1/offer/{offer}")).await;
    assert_eq!(o["bid_price"].as_f64(), Some(max), "the offer's price is the winning bid's");
}

#[tokio::test]
async fn concurrent_bids_keep_every_invariant_and_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let seller = Market::user(&server, "seller").await;
    let offers = [seller.offer("a", 1.0, 0).await, seller.offer("b", 1.0, 0).await, seller.offer("c", 1.0, 0).await];
    let mut bidders = Vec::new();
    for i in 0..8 {
        bidders.push(Market::user(&server, &format!("bidder{i}")).await);
    }
    // 3,000 bids from 50 connections at once, prices drawn so that many tie and many are
    // lower than the current price when they arrive.
    let mut tasks = Vec::new();
    for t in 0..50usize {
        let bidder = bidders[t % bidders.len()].clone();
        let offers = offers.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..60usize {
                let offer = &offers[(t + n) % 3];
                let price = (((t * 7919 + n * 104_729) % 500) + 1) as f64;
                let (status, body) = bidder.post("/v1/bid", json!({"bid_price": price, "offer_id": offer})).await;
                assert_eq!(status, 201, "{body}");
                acked.push((offer.clone(), body["id"].as_str().unwrap().to_string(), price));
            }
            acked
        }));
    }
    let mut acked: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for task in tasks {
        for (offer, id, price) in task.await.unwrap() {
            acked.entry(offer).or_default().insert(id, price);
        }
    }
    assert_eq!(acked.values().map(HashMap::len).sum::<usize>(), 3000);
    for offer in &offers {
        check_offer(&seller, offer, &acked[offer]).await;
    }

    // Again, and SIGKILL in the middle: every bid answered 201 before the kill is there
    // after the restart, and the invariants hold.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..50usize {
        let bidder = bidders[t % bidders.len()].clone();
        let (offers, answered) = (offers.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..1000usize {
                let offer = &offers[(t + n) % 3];
                let price = (((t * 31 + n * 7) % 900) + 1) as f64;
                let rb =
                    bidder.http.post(format!("{}/v1/bid", bidder.base)).bearer_auth(bidder.token.as_ref().unwrap());
                let Ok(resp) = rb.json(&json!({"bid_price": price, "offer_id": offer})).send().await else { break };
                if resp.status().as_u16() != 201 {
                    break;
                }
                let Ok(body) = resp.json::<Value>().await else { break };
                acked.push((offer.clone(), body["id"].as_str().unwrap().to_string(), price));
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            acked
        }));
    }
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 1500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    for task in tasks {
        for (offer, id, price) in task.await.unwrap() {
            acked.entry(offer).or_default().insert(id, price);
        }
    }
    assert!(acked.values().map(HashMap::len).sum::<usize>() >= 4500);

    let server = Server::start(dir.path(), &[]);
    let seller = Market { base: server.http.clone(), ..seller };
    let (status, _) = seller.get("/v1/offer").await;
    assert_eq!(status, 200, "the market token outlives the restart (its key is in the store)");
    for offer in &offers {
        check_offer(&seller, offer, &acked[offer]).await;
    }
}

/// The seed's test page, in Chromium: sign in, see offers arrive and prices rise live,
/// make an offer from the page; no CSP violation.
#[tokio::test]
async fn the_index_page_shows_offers_and_prices_live_in_headless_chromium() {
    use support::browser::*;
    if !support::require_tool("chromedriver", "chromium-driver") || !support::require_tool("chromium", "chromium") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let seller = Market::user(&server, "seller").await;
    let buyer = Market::user(&server, "buyer").await;
    let before = seller.offer("before the page", 3.0, 0).await;

    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;
    c.goto(&format!("{}/index", server.http)).await.unwrap();
    fill(&c, "#username", "seller").await;
    fill(&c, "#password", "seller-password").await;
    click(&c, "#login button").await;
    wait_contains(&c, "#status", "Signed in as seller").await;
    wait_text(&c, &format!("#offers tr[data-id='{before}'] td:first-child"), "before the page").await;

    // Made elsewhere: it appears; a bid: its price rises.
    let live = seller.offer("made while watching", 10.0, 0).await;
    wait_text(&c, &format!("#offers tr[data-id='{live}'] td:first-child"), "made while watching").await;
    assert_eq!(buyer.post("/v1/bid", json!({"bid_price": 42.5, "offer_id": live})).await.0, 201);
    wait_text(&c, &format!("#offers tr[data-id='{live}'] td:nth-child(2)"), "42.5").await;

    // Made on the page.
    fill(&c, "#title", "<b>made on the page</b>").await;
    fill(&c, "#price", "7").await;
    click(&c, "#offer button").await;
    wait_text(&c, "#offers tr:first-child td:first-child", "<b>made on the page</b>").await;
    assert_eq!(count(&c, "#offers b").await, 0, "what the server sends is shown as text");
    assert_no_page_errors(&c).await;
    c.close().await.unwrap();
}
