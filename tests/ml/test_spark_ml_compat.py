"""Drop-in compatibility on MovieLens 100K: the Spark documentation's ALS example with only
the import line changed, and model selection with CrossValidator in a Pipeline."""

from __future__ import annotations

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

from mfspark import ALS, ALSModel

#: The flow of examples/src/main/python/ml/als_example.py (Spark docs, "Collaborative
#: filtering"), reading MovieLens 100K's tab-separated u.data instead of the sample, with
#: the parameters of the docs' MLlib example (rank 10, regParam 0.1, seed-1 split).
EXAMPLE = '''
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.recommendation import ALS
from pyspark.sql import Row

lines = spark.read.text(path).rdd
parts = lines.map(lambda row: row.value.split("\\t"))
ratingsRDD = parts.map(lambda p: Row(userId=int(p[0]), movieId=int(p[1]),
                                     rating=float(p[2]), timestamp=int(p[3])))
ratings = spark.createDataFrame(ratingsRDD)
(training, test) = ratings.randomSplit([0.8, 0.2], seed=1)

# Build the recommendation model using ALS on the training data
# Note we set cold start strategy to 'drop' to ensure we don't get NaN evaluation metrics
als = ALS(rank=10, maxIter=10, regParam=0.1, userCol="userId", itemCol="movieId",
          ratingCol="rating", coldStartStrategy="drop", seed=1)
model = als.fit(training)

# Evaluate the model by computing the RMSE on the test data
predictions = model.transform(test)
evaluator = RegressionEvaluator(metricName="rmse", labelCol="rating",
                                predictionCol="prediction")
rmse = evaluator.evaluate(predictions)
print("Root-mean-square error = " + str(rmse))

# Generate top 10 movie recommendations for each user
userRecs = model.recommendForAllUsers(10)
# Generate top 10 user recommendations for each movie
movieRecs = model.recommendForAllItems(10)

# Generate top 10 movie recommendations for a specified set of users
users = ratings.select(als.getUserCol()).distinct().limit(3)
userSubsetRecs = model.recommendForUserSubset(users, 10)
# Generate top 10 user recommendations for a specified set of movies
movies = ratings.select(als.getItemCol()).distinct().limit(3)
movieSubSetRecs = model.recommendForItemSubset(movies, 10)
'''

MLLIB_IMPORT = "from pyspark.ml.recommendation import ALS"


def run_example(spark, path: str, import_line: str) -> dict:
    namespace = {"spark": spark, "path": path}
    exec(EXAMPLE.replace(MLLIB_IMPORT, import_line), namespace)  # noqa: S102
    return namespace


def test_docs_example_with_only_the_import_changed(spark, ml100k_path):
    ours = run_example(spark, ml100k_path, "from mfspark import ALS")
    assert isinstance(ours["model"], ALSModel)
    mllib = run_example(spark, ml100k_path, MLLIB_IMPORT)
    assert ours["rmse"] <= mllib["rmse"], (ours["rmse"], mllib["rmse"])
    assert ours["rmse"] < 0.93
    for name in ("userRecs", "movieRecs", "userSubsetRecs", "movieSubSetRecs"):
        # MLlib's output schema: same columns, same struct field names
        assert ours[name].columns == mllib[name].columns, name
        ours_fields = ours[name].schema["recommendations"].dataType.elementType.fieldNames()
        assert ours_fields == mllib[name].schema["recommendations"].dataType.elementType \
            .fieldNames(), name
    assert ours["userRecs"].count() == mllib["userRecs"].count() == 943
    assert ours["userSubsetRecs"].count() == 3 and ours["movieSubSetRecs"].count() == 3
    assert all(len(r["recommendations"]) == 10 for r in ours["userSubsetRecs"].collect())


def test_cross_validator_picks_a_model_that_saves_and_loads(spark, ml100k_path, tmp_path):
    ratings = spark.read.csv(ml100k_path, sep="\t",
                             schema="user int, item int, rating double, ts long")
    train, test = ratings.randomSplit([0.9, 0.1], seed=3)
    als = ALS(rank=5, maxIter=2, numUserBlocks=2, numItemBlocks=2, coldStartStrategy="drop")
    grid = ParamGridBuilder().addGrid(als.regParam, [0.05, 5.0]).build()
    evaluator = RegressionEvaluator(metricName="rmse", labelCol="rating")
    cv = CrossValidator(estimator=Pipeline(stages=[als]), estimatorParamMaps=grid,
                        evaluator=evaluator, numFolds=2, seed=7)
    cv_model = cv.fit(train)
    assert len(cv_model.avgMetrics) == 2
    assert cv_model.avgMetrics[0] < cv_model.avgMetrics[1]  # lambda 5 x count: underfits
    best = cv_model.bestModel
    assert best.stages[0].metadata["reg"] == 0.05
    best.save(str(tmp_path / "best"))
    loaded = PipelineModel.load(str(tmp_path / "best"))
    key = ["user", "item"]
    want = {tuple(r[:2]): r["prediction"] for r in best.transform(test).select(
        *key, "prediction").collect()}
    got = {tuple(r[:2]): r["prediction"] for r in loaded.transform(test).select(
        *key, "prediction").collect()}
    assert got.keys() == want.keys() and len(got) > 9000
    assert all(got[pair] == pytest.approx(want[pair], rel=1e-12) for pair in want)
