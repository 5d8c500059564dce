"""What the demo shows about an answer and about the model, and the scripts that measure it for a checkpoint.

evidence     which memory tokens an answer rests on, and how much of the asked range the memory covers
find         where an object appears: crop-to-token similarity over the memory
domain       is a video or a crop unlike the training data (token statistics -> domain.json)
calibration  temperature/Platt scaling of answer probabilities (-> calibration.json)
"""
