fn main() {
    print!("{}", cutover::crd::crd_yaml());
}
