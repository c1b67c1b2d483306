//! A real HTTP server on 127.0.0.1 for `http:` steps: scripted responses per path, with a
//! count of the requests each path received.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Reply {
        Reply { status, body: body.to_owned() }
    }

    /// Reads the request and never answers (for a minute).
    pub fn hang() -> Reply {
        Reply { status: 0, body: String::new() }
    }
}

#[derive(Default)]
struct Routes {
    /// Replies are served in order; the last one repeats.
    replies: HashMap<String, Vec<Reply>>,
    hits: HashMap<String, usize>,
    bodies: Vec<(String, String)>,
}

pub struct Server {
    pub port: u16,
    routes: Arc<Mutex<Routes>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("addr: {e}"));
        let routes = Arc::new(Mutex::new(Routes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (routes.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let r = r.clone();
                    thread::spawn(move || serve(stream, &r));
                }
            }
        });
        Server { port, routes, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn route(&self, path: &str, replies: Vec<Reply>) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.replies.insert(path.to_owned(), replies);
        }
    }

    pub fn hits(&self, path: &str) -> usize {
        self.routes.lock().map(|r| r.hits.get(path).copied().unwrap_or(0)).unwrap_or(0)
    }

    pub fn bodies(&self) -> Vec<(String, String)> {
        self.routes.lock().map(|r| r.bodies.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, routes: &Arc<Mutex<Routes>>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let reply = {
        let Ok(mut routes) = routes.lock() else { return };
        *routes.hits.entry(path.clone()).or_default() += 1;
        routes.bodies.push((path.clone(), String::from_utf8_lossy(&body).into_owned()));
        let hit = routes.hits[&path];
        match routes.replies.get(&path) {
            Some(list) if !list.is_empty() => list[(hit - 1).min(list.len() - 1)].clone(),
            _ => Reply::new(404, "not found"),
        }
    };
    if reply.status == 0 {
        thread::sleep(std::time::Duration::from_secs(60));
        return;
    }
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
}
