//! An HTTP server that keeps what is POSTed to it (the call-end events), on `tiny_http`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A real HTTP server for the tests: accepts requests on `addr` (one per connection or kept
/// alive), answers `200 OK` (or what it is told to) and keeps every request's body.
pub struct HttpSink {
    pub bodies: Arc<Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpSink {
    pub fn start(addr: &str) -> HttpSink {
        HttpSink::answering(addr, 200, None)
    }

    /// [`start`](Self::start), answering `status` to every request, with a `Location`
    /// header when given (a redirect).
    pub fn answering(addr: &str, status: u16, location: Option<&str>) -> HttpSink {
        let location = location
            .map(|l| tiny_http::Header::from_bytes("Location", l).expect("a Location header"));
        let server =
            Arc::new(tiny_http::Server::http(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")));
        let bodies: Arc<Mutex<Vec<String>>> = Default::default();
        let stop: Arc<AtomicBool> = Default::default();
        let (srv, b, st) = (server.clone(), bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                // An error is a failed accept, or the unblock of drop.
                let Ok(mut request) = srv.recv() else {
                    continue;
                };
                let mut body = Vec::new();
                if request.as_reader().read_to_end(&mut body).is_err() {
                    continue;
                }
                b.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into());
                let mut response = tiny_http::Response::empty(status);
                if let Some(l) = &location {
                    response.add_header(l.clone());
                }
                let _ = request.respond(response);
            }
        });
        HttpSink {
            bodies,
            server,
            stop,
            thread: Some(thread),
        }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
