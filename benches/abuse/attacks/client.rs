//! The attack client's own connections: TLS to the server (the tests' client configurations),
//! HTTP/1.1 or HTTP/2 on hyper with the answer's size kept, timed posts, GETs on the plain-HTTP
//! metrics port, raw response heads, and TCP connections from other loopback addresses.

use super::*;

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

pub async fn tls_connect(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Result<Tls, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

pub type ReqBody = Full<Bytes>;

pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

impl Conn {
    pub async fn open(srv: &Server, h2: bool) -> Result<Conn, String> {
        Conn::open_to(srv.addr, if h2 { &srv.tls_h2 } else { &srv.tls_h1 }, h2).await
    }

    pub async fn open_to(
        addr: SocketAddr,
        tls: &Arc<rustls::ClientConfig>,
        h2: bool,
    ) -> Result<Conn, String> {
        let s = tls_connect(addr, tls.clone()).await?;
        if h2 {
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(s))
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .map_err(|e| format!("http/1.1 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(Conn::H1(send))
        }
    }

    /// A second handle on the same HTTP/2 connection (another stream).
    pub fn stream(&self) -> Option<Conn> {
        match self {
            Conn::H2(s) => Some(Conn::H2(s.clone())),
            Conn::H1(_) => None,
        }
    }

    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<Answer, String> {
        let req = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let resp = match self {
            Conn::H1(s) => {
                s.ready().await.map_err(|e| format!("not ready: {e}"))?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                s.ready().await.map_err(|e| format!("not ready: {e}"))?;
                s.send_request(req).await
            }
        }
        .map_err(|e| format!("request: {e}"))?;
        Answer::read(resp).await
    }
}

/// An answer: status, size, and the body kept up to 1 MiB.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub size: usize,
    pub body: Vec<u8>,
}

pub(crate) const ANSWER_KEEP: usize = 1 << 20;

impl Answer {
    async fn read(resp: hyper::Response<hyper::body::Incoming>) -> Result<Answer, String> {
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut kept = Vec::new();
        let mut size = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("body: {e}"))?;
            if let Ok(data) = frame.into_data() {
                size += data.len();
                if kept.len() < ANSWER_KEEP {
                    let room = ANSWER_KEEP - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
        Ok(Answer {
            status,
            size,
            body: kept,
        })
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        if self.size > self.body.len() {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }

    /// Does the answer echo `uid` as `response.uid`? (A large answer: its kept head names it.)
    pub fn echoes(&self, uid: &str) -> bool {
        match self.json() {
            Some(v) => v["response"]["uid"].as_str() == Some(uid),
            None => {
                let needle = format!("\"uid\":\"{uid}\"");
                self.size > self.body.len()
                    && self
                        .body
                        .windows(needle.len())
                        .any(|w| w == needle.as_bytes())
            }
        }
    }
}

/// POST with a time limit: the answer and its time, or why not.
pub async fn timed_post(
    conn: &mut Conn,
    path: &str,
    body: Bytes,
    limit: Duration,
) -> (Duration, Result<Answer, String>) {
    let t = Instant::now();
    let r = match tokio::time::timeout(limit, conn.post(path, body)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    };
    (t.elapsed(), r)
}

/// GET on the plain-HTTP metrics port: status, content type, body.
pub async fn metrics_get(addr: SocketAddr, path: &str) -> Result<(u16, String, Bytes), String> {
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, ct, body))
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| format!("GET {path}: no answer within 30 s"))?
}

/// POST on a new HTTP/1.1 connection, timed from the request (not the handshake).
pub(crate) async fn fresh_post(
    srv: &Server,
    path: &str,
    body: Bytes,
    limit: Duration,
) -> (Duration, Result<Answer, String>) {
    match tokio::time::timeout(limit, Conn::open(srv, false)).await {
        Ok(Ok(mut c)) => timed_post(&mut c, path, body, limit).await,
        Ok(Err(e)) => (limit, Err(e)),
        Err(_) => (limit, Err("no connection".into())),
    }
}

/// Reads one HTTP/1.1 response head (up to the blank line).
pub(crate) async fn read_head(s: &mut Tls, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let r = tokio::time::timeout(limit, async {
        while !buf.ends_with(b"\r\n\r\n") && buf.len() < 64 * 1024 {
            match s.read(&mut byte).await {
                Ok(1) => buf.push(byte[0]),
                _ => break,
            }
        }
    })
    .await;
    if r.is_err() || buf.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

pub(crate) fn status_of(head: &str) -> Option<u16> {
    head.split(' ').nth(1)?.parse().ok()
}

/// Attacks from other client addresses: 127.0.0.2 and up (all of 127/8 is the loopback on
/// Linux), so that the probe (127.0.0.1) is another client, as the API server is to a hostile
/// pod. A TCP connection to `addr` from the loopback address `127.0.0.<src>`.
pub async fn tcp_from(addr: SocketAddr, src: u8) -> Result<TcpStream, String> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::from(([127, 0, 0, src], 0)))
        .map_err(|e| format!("bind 127.0.0.{src}: {e}"))?;
    let tcp = sock
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// GET on the metrics port with a time limit (a kubelet probe's one second, and some).
pub async fn metrics_get_within(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> Result<(u16, String, Bytes), String> {
    tokio::time::timeout(limit, metrics_get(addr, path))
        .await
        .map_err(|_| format!("no answer within {} s", limit.as_secs()))?
}
