fn main() -> std::process::ExitCode {
    burnlink::cli::main()
}
