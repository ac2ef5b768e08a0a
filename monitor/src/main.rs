fn main() {
    eprintln!("file-monitor: not built yet");
    std::process::exit(2);
}
