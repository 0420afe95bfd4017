print("starling-bench")
