//! `serve`, `check` and `echo`: load a config, run the gateway, handle signals.

use std::path::Path;
use std::process::ExitCode;

use portcullis_proxy::config::{self, Config};
use portcullis_proxy::Gateway;

/// Sets up the event log (stderr): text or JSON lines, level from config or RUST_LOG.
pub fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,rustls=warn,h2=warn"))
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Loads a config and prints its diagnostics; `None` when it has errors.
pub fn load_reporting(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok((cfg, diags)) => {
            for w in diags.warnings() {
                eprintln!("{w}");
            }
            Some(cfg)
        }
        Err(diags) => {
            eprintln!("{diags}");
            None
        }
    }
}

pub fn check(path: &Path) -> ExitCode {
    match load_reporting(path) {
        Some(cfg) => {
            println!(
                "{}: OK ({} listener(s), {} route(s), {} upstream(s))",
                path.display(),
                cfg.listeners.len(),
                cfg.routes.len(),
                cfg.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::from(2),
    }
}

pub fn serve(path: &Path) -> ExitCode {
    let Some(cfg) = load_reporting(path) else {
        return ExitCode::from(2);
    };
    init_logging(&cfg.log.level, cfg.log.json);
    run_gateway(cfg, |_| {})
}

/// Runs the gateway until SIGINT/SIGTERM; `on_ready` sees the bound addresses.
pub fn run_gateway(cfg: Config, on_ready: impl FnOnce(&portcullis_proxy::BoundAddrs)) -> ExitCode {
    // The control runtime: signals, reloads, health checks, the admin API,
    // redirects. Connections are served on the worker threads the gateway
    // starts (`[server] worker_threads`, one per core by default).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .thread_name("portcullis-control")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = std::sync::Arc::new(cfg);
    rt.block_on(async move {
        let gw = match Gateway::bind(cfg.clone()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        on_ready(gw.addrs());
        portcullis_proxy::expiry::warn_soon(&cfg, std::time::Duration::from_secs(30 * 86400));
        spawn_reload_on_sighup(gw.reloader());
        let access = gw.reloader();
        tokio::spawn(async move {
            let Ok(mut usr1) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            else {
                return;
            };
            while usr1.recv().await.is_some() {
                tracing::info!("SIGUSR1: reopening the access log");
                access.access_log().reopen();
            }
        });
        gw.serve(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

pub fn echo_only(addr: std::net::SocketAddr) -> ExitCode {
    init_logging("info", false);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let l = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("echo upstream on http://{}", l.local_addr().unwrap_or(addr));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(portcullis_proxy::echo::serve(l, rx));
        shutdown_signal().await;
        let _ = tx.send(true);
        let _ = server.await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP: reload the config file; a broken one is refused and the running one stays.
fn spawn_reload_on_sighup(reloader: portcullis_proxy::Reloader) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = reloader.reload_file("sighup");
        }
    });
}
