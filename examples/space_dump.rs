use nas::search::{RandomSampler, Sampler};
use rand::SeedableRng;
fn main() {
    let p = std::env::args().nth(1).unwrap();
    match nas::space::SearchSpace::from_file(std::path::Path::new(&p)) {
        Ok(s) => {
            for p in &s.params {
                println!("{} {:?} {:?}", p.name, p.dist, p.conditions);
            }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            for _ in 0..3 {
                let c = RandomSampler.suggest(&s, &[], &mut rng);
                s.validate_config(&c).unwrap();
                println!("{:?}\n{:?}", c, s.decode(&c));
            }
        }
        Err(e) => println!("{e}"),
    }
}
