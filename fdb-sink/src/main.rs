fn main() {
    eprintln!("fdb-sink: not built yet");
    std::process::exit(2);
}
